// RateLimiter: burst, refill, per principal, bounded memory; an injected
// clock, no sleeps.
#include "keyservice/rate_limiter.h"

#include <gtest/gtest.h>

namespace envelope::keyservice {
namespace {

using namespace std::chrono_literals;

TEST(RateLimiterTest, BurstThenRefillPerPrincipal) {
  auto now = std::chrono::steady_clock::time_point{} + 100s;
  RateLimiter limiter(3, 2, [&] { return now; });
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Allow("uid:1000"));
  EXPECT_FALSE(limiter.Allow("uid:1000"));
  EXPECT_TRUE(limiter.Allow("uid:1001"));  // another principal has its own bucket
  now += 499ms;
  EXPECT_FALSE(limiter.Allow("uid:1000"));  // 0.998 tokens
  now += 1ms;
  EXPECT_TRUE(limiter.Allow("uid:1000"));
  EXPECT_FALSE(limiter.Allow("uid:1000"));
  now += 10s;  // refills to the burst, not beyond
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Allow("uid:1000"));
  EXPECT_FALSE(limiter.Allow("uid:1000"));
}

TEST(RateLimiterTest, BoundedBucketsFailClosedUnderAFlood) {
  auto now = std::chrono::steady_clock::time_point{} + 100s;
  RateLimiter limiter(1, 1, [&] { return now; }, 2);
  EXPECT_TRUE(limiter.Allow("a"));
  EXPECT_TRUE(limiter.Allow("b"));
  EXPECT_FALSE(limiter.Allow("c"));  // both buckets still in use
  now += 2s;                          // a and b refilled: forgotten
  EXPECT_TRUE(limiter.Allow("c"));
  EXPECT_TRUE(limiter.Allow("a"));
}

}  // namespace
}  // namespace envelope::keyservice
