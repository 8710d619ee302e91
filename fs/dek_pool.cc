#include "fs/dek_pool.h"

namespace envelope::fs {

DekPool::~DekPool() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  // ready_ goes with its SecretBytes, wiped.
}

StatusOr<DekPool::Entry> DekPool::Take() {
  {
    std::lock_guard lock(mu_);
    if (!thread_.joinable() && capacity_ > 0) thread_ = std::thread([this] { Refill(); });
    const auto now = std::chrono::steady_clock::now();
    while (!ready_.empty() && now - ready_.front().made > max_age_) ready_.pop_front();
    want_refill_ = true;
    if (!ready_.empty()) {
      Entry e = std::move(ready_.front());
      ready_.pop_front();
      wake_.notify_one();
      return e;
    }
  }
  wake_.notify_one();
  return generator_();
}

void DekPool::Refill() {
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait(lock, [this] { return stop_ || (want_refill_ && ready_.size() < capacity_); });
    if (stop_) return;
    lock.unlock();
    StatusOr<Entry> e = generator_();
    lock.lock();
    if (!e.ok()) {
      // The key service is unavailable or refuses: stop pre-making keys
      // until the next Take, which will report the error itself.
      want_refill_ = false;
      continue;
    }
    ready_.push_back(std::move(*e));
    if (ready_.size() >= capacity_) want_refill_ = false;
  }
}

}  // namespace envelope::fs
