#include "keyservice/rate_limiter.h"

#include <algorithm>

namespace envelope::keyservice {

RateLimiter::RateLimiter(double burst, double per_second, Clock clock, size_t max_principals)
    : burst_(burst), per_second_(per_second), clock_(std::move(clock)),
      max_principals_(max_principals) {}

bool RateLimiter::Allow(const std::string& principal) {
  const auto now = clock_();
  std::lock_guard<std::mutex> lock(mu_);
  auto refill = [&](Bucket& b) {
    const double seconds = std::chrono::duration<double>(now - b.updated).count();
    b.tokens = std::min(burst_, b.tokens + std::max(0.0, seconds) * per_second_);
    b.updated = now;
  };
  auto it = buckets_.find(principal);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_principals_) {
      // Forget the buckets that have refilled: they are as good as new.
      for (auto b = buckets_.begin(); b != buckets_.end();) {
        refill(b->second);
        b = b->second.tokens >= burst_ ? buckets_.erase(b) : std::next(b);
      }
      if (buckets_.size() >= max_principals_) return false;  // fail closed under a flood
    }
    it = buckets_.emplace(principal, Bucket{burst_, now}).first;
  }
  refill(it->second);
  if (it->second.tokens < 1.0) return false;
  it->second.tokens -= 1.0;
  return true;
}

}  // namespace envelope::keyservice
