#include "fs/serial_worker.h"

#include <utility>

namespace envelope::fs {

SerialWorker::SerialWorker() = default;

SerialWorker::~SerialWorker() { Stop(); }

void SerialWorker::Post(std::function<void()> job) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
      jobs_.push_back(std::move(job));
      cv_.notify_one();
      return;
    }
  }
  job();
}

void SerialWorker::Stop() {
  std::thread thread;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    cv_.notify_one();
    thread = std::move(thread_);
  }
  if (thread.joinable()) thread.join();
}

void SerialWorker::Run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stopping, and nothing left
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job();
    lock.lock();
  }
}

}  // namespace envelope::fs
