#include "core/base/parallel_runner.h"

#include <algorithm>

namespace envelope {

ParallelRunner::ParallelRunner(size_t helpers) {
  threads_.reserve(helpers);
  for (size_t i = 0; i < helpers; ++i) threads_.emplace_back([this] { HelperLoop(); });
}

ParallelRunner::~ParallelRunner() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

namespace {
size_t HelpersForThisMachine() {
  const unsigned cores = std::thread::hardware_concurrency();
  return cores > 1 ? std::min<size_t>(cores - 1, 7) : 0;
}
}  // namespace

ParallelRunner& ParallelRunner::Shared() {
  // Destroyed at exit, which joins the helpers: a thread that ends runs
  // OpenSSL's per-thread cleanup (its DRBGs and error state), which a
  // thread still parked at exit would leave behind. Made on first use,
  // after OpenSSL initialised, so it goes before OpenSSL's own atexit
  // cleanup.
  static ParallelRunner runner(HelpersForThisMachine());
  return runner;
}

size_t ParallelRunner::Drain(Job& job) {
  size_t ran = 0;
  for (size_t i; (i = job.next.fetch_add(1, std::memory_order_relaxed)) < job.parts; ++ran) {
    (*job.fn)(i);
  }
  return ran;
}

void ParallelRunner::Run(size_t parts, const std::function<void(size_t)>& fn) {
  if (parts == 0) return;
  Job job;
  job.fn = &fn;
  job.parts = parts;
  bool posted = false;
  if (parts > 1 && !threads_.empty()) {
    std::lock_guard lock(mu_);
    if (job_ == nullptr) {
      job_ = &job;
      posted = true;
    }
  }
  if (posted) work_cv_.notify_all();
  const size_t ran = Drain(job);
  if (!posted) return;
  std::unique_lock lock(mu_);
  if (job_ == &job) job_ = nullptr;  // no helper may pick it up any more
  job.done += ran;
  // Every part was claimed (Drain returned); wait until each claimed part
  // has finished and no helper holds the job.
  done_cv_.wait(lock, [&] { return job.done == job.parts && job.users == 0; });
}

void ParallelRunner::HelperLoop() {
  std::unique_lock lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] { return stop_ || job_ != nullptr; });
    if (stop_) return;
    Job& job = *job_;
    ++job.users;
    lock.unlock();
    const size_t ran = Drain(job);
    lock.lock();
    // Every part is claimed now: the job is no longer open to others.
    if (job_ == &job) job_ = nullptr;
    job.done += ran;
    --job.users;
    done_cv_.notify_all();
  }
}

}  // namespace envelope
