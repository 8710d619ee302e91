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
    const auto now = clock_();
    CountDemand(now);
    while (!ready_.empty() && now - ready_.front().made > max_age_) ready_.pop_front();
    if (!ready_.empty()) {
      Entry e = std::move(ready_.front());
      ready_.pop_front();
      want_refill_ = true;
      if (RefillWanted()) wake_.notify_one();
      return e;
    }
  }
  StatusOr<std::vector<Entry>> made = generator_(1);
  {
    std::lock_guard lock(mu_);
    want_refill_ = true;
  }
  wake_.notify_one();
  if (!made.ok()) return made.status();
  return std::move(made->front());
}

void DekPool::CountDemand(std::chrono::steady_clock::time_point now) {
  const auto window = max_age_ / 4;
  if (taken_in_window_ == 0 || now - window_start_ >= window) {
    // A new window; the one just ended counts only if it ended just now.
    taken_last_window_ =
        taken_in_window_ > 0 && now - window_start_ < 2 * window ? taken_in_window_ : 0;
    taken_in_window_ = 0;
    window_start_ = now;
  }
  ++taken_in_window_;
  const size_t demand = std::max(taken_in_window_, taken_last_window_);
  target_ = std::min(capacity_, std::max(kMinTarget, 2 * demand));
}

void DekPool::WaitUntilIdle() {
  std::unique_lock lock(mu_);
  idle_.wait(lock, [this] { return !refilling_ && (!thread_.joinable() || !RefillWanted()); });
}

void DekPool::Refill() {
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait(lock, [this] { return stop_ || RefillWanted(); });
    if (stop_) return;
    const size_t count = target_ - std::min(target_, ready_.size());
    refilling_ = true;
    lock.unlock();
    StatusOr<std::vector<Entry>> made = generator_(count);
    lock.lock();
    // Filled, or the key service is unavailable or refuses: stop pre-making
    // keys until the next Take, which reports any error itself.
    want_refill_ = false;
    refilling_ = false;
    if (made.ok()) {
      for (Entry& e : *made) ready_.push_back(std::move(e));
    }
    idle_.notify_all();
  }
}

}  // namespace envelope::fs
