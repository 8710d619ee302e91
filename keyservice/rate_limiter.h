// A token bucket per principal, for the operations whose cost a caller
// chooses: making a key pair (GenerateDataKeyPair, GetParametersForImport's
// wrapping key) costs up to a second of CPU for RSA_4096, where a
// symmetric operation costs microseconds. AWS answers such requests past
// its quotas with ThrottlingException; so does envelope-keyd, per principal
// (Principal::OwnerId), so that one caller cannot take the daemon's CPU
// from the others.
//
// Thread safety: all methods are thread-safe. The clock is injected.
#ifndef ENVELOPE_KEYSERVICE_RATE_LIMITER_H_
#define ENVELOPE_KEYSERVICE_RATE_LIMITER_H_

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>

namespace envelope::keyservice {

class RateLimiter {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  // `burst` requests at once, refilled at `per_second`; at most
  // `max_principals` buckets are kept (the fullest are dropped first: a
  // full bucket is the same as none).
  RateLimiter(double burst, double per_second, Clock clock, size_t max_principals = 4096);

  // Takes one token of `principal`'s bucket; false if it is empty.
  bool Allow(const std::string& principal);

 private:
  struct Bucket {
    double tokens;
    std::chrono::steady_clock::time_point updated;
  };
  const double burst_;
  const double per_second_;
  const Clock clock_;
  const size_t max_principals_;
  std::mutex mu_;
  std::map<std::string, Bucket> buckets_;  // guarded by mu_
};

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_RATE_LIMITER_H_
