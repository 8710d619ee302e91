#include "fs/dek_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <set>
#include <vector>

namespace envelope::fs {
namespace {

// A clock the test moves by hand: entry ages never depend on scheduling.
struct FakeClock {
  std::atomic<int64_t> ms{0};
  std::chrono::steady_clock::time_point Now() const {
    return std::chrono::steady_clock::time_point(std::chrono::milliseconds(ms.load()));
  }
  DekPool::Clock AsClock() {
    return [this] { return Now(); };
  }
};

// Makes numbered entries stamped with `clock` and records the size of each
// request.
DekPool::Generator Counting(std::atomic<int>* made, std::atomic<bool>* fail,
                            FakeClock* clock, std::vector<size_t>* requests = nullptr,
                            std::mutex* requests_mu = nullptr) {
  return [=](size_t count) -> StatusOr<std::vector<DekPool::Entry>> {
    if (*fail) return Status::Unavailable("key service down");
    if (requests != nullptr) {
      std::lock_guard lock(*requests_mu);
      requests->push_back(count);
    }
    std::vector<DekPool::Entry> out;
    for (size_t i = 0; i < count; ++i) {
      DekPool::Entry e;
      int n = ++*made;
      e.file_id.fill(0);
      std::memcpy(e.file_id.data(), &n, sizeof(n));
      e.key.plaintext = std::move(*crypto::SecretBytes::Random(32));
      e.made = clock->Now();
      out.push_back(std::move(e));
    }
    return out;
  };
}

// Counting's state, with the size of every request the pool made.
struct Recorder {
  std::atomic<int> made{0};
  std::atomic<bool> fail{false};
  FakeClock clock;
  std::mutex mu;
  std::vector<size_t> requests;  // guarded by mu

  DekPool::Generator Generator() { return Counting(&made, &fail, &clock, &requests, &mu); }
  std::vector<size_t> Seen() {
    std::lock_guard lock(mu);
    return requests;
  }
};

constexpr std::chrono::milliseconds kMaxAge(2000);

TEST(DekPoolTest, EveryEntryIsHandedOutOnce) {
  std::atomic<int> made{0};
  std::atomic<bool> fail{false};
  FakeClock clock;
  DekPool pool(Counting(&made, &fail, &clock), 8, kMaxAge, clock.AsClock());
  std::set<format::FileId> ids;
  for (int i = 0; i < 100; ++i) {
    auto e = pool.Take();
    ASSERT_TRUE(e.ok());
    EXPECT_TRUE(ids.insert(e->file_id).second);
  }
}

TEST(DekPoolTest, RefillsAheadAfterATakeAndNotWhileIdle) {
  std::atomic<int> made{0};
  std::atomic<bool> fail{false};
  FakeClock clock;
  DekPool pool(Counting(&made, &fail, &clock), 8, kMaxAge, clock.AsClock());
  pool.WaitUntilIdle();
  EXPECT_EQ(made.load(), 0);  // nothing before the first create
  ASSERT_TRUE(pool.Take().ok());
  pool.WaitUntilIdle();
  // The first, made on demand, then one batch filled the pool to the
  // target of one create: 2.
  EXPECT_EQ(made.load(), 3);
  pool.WaitUntilIdle();
  EXPECT_EQ(made.load(), 3);  // idle: no refill is wanted, none runs
}

TEST(DekPoolTest, RefillsInOneBatchOnceDownToHalf) {
  Recorder r;
  DekPool pool(r.Generator(), 8, kMaxAge,
               r.clock.AsClock());
  // The clock stands still: the target is twice the creates so far, up
  // to 8; each Take that leaves the pool at half of it or less tops it up.
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(pool.Take().ok());
    pool.WaitUntilIdle();
  }
  // Targets 2, 4, 6, 8, 8; the pool held 0, 1, 3, 5, 4 after each Take.
  EXPECT_EQ(r.Seen(), (std::vector<size_t>{1, 2, 3, 3, 4}));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(pool.Take().ok());  // 5 left: above half
  pool.WaitUntilIdle();
  EXPECT_EQ(r.Seen(), (std::vector<size_t>{1, 2, 3, 3, 4}));
  ASSERT_TRUE(pool.Take().ok());  // 4 left: half, so one batch of 4
  pool.WaitUntilIdle();
  EXPECT_EQ(r.Seen(), (std::vector<size_t>{1, 2, 3, 3, 4, 4}));
}

TEST(DekPoolTest, StaleEntriesAreDroppedAndErrorsReachTheCaller) {
  std::atomic<int> made{0};
  std::atomic<bool> fail{false};
  FakeClock clock;
  DekPool pool(Counting(&made, &fail, &clock), 4, kMaxAge, clock.AsClock());
  ASSERT_TRUE(pool.Take().ok());
  pool.WaitUntilIdle();
  ASSERT_EQ(made.load(), 3);  // 1 on demand, then a target of 2
  clock.ms += kMaxAge.count();  // exactly max_age old: still good
  auto fresh = pool.Take();
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh->file_id[0], 2);  // the pool's oldest, not one made now
  pool.WaitUntilIdle();
  clock.ms += kMaxAge.count() + 1;  // everything in the pool is too old
  fail = true;
  auto e = pool.Take();
  EXPECT_EQ(e.status().code(), StatusCode::kUnavailable);
}

TEST(DekPoolTest, TheTargetFollowsTheRateOfCreates) {
  Recorder r;
  DekPool pool(r.Generator(), 64, kMaxAge,
               r.clock.AsClock());
  // A burst (the clock stands still): each Take raises the target, to twice
  // the creates seen in the window, until the capacity caps it.
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(pool.Take().ok());
    pool.WaitUntilIdle();
  }
  std::vector<size_t> burst = r.Seen();
  size_t largest = 0;
  for (size_t n : burst) largest = std::max(largest, n);
  EXPECT_GE(largest, 16u);  // the first batch was 2
  EXPECT_LE(largest, 64u);
  EXPECT_LE(r.made.load(), 40 + 64);  // never more ahead than the capacity
  // The burst is over: everything left goes stale, and the next create
  // finds a small target again.
  r.clock.ms += kMaxAge.count() + 1;
  ASSERT_TRUE(pool.Take().ok());
  pool.WaitUntilIdle();
  std::vector<size_t> after = r.Seen();
  ASSERT_EQ(after.size(), burst.size() + 2);
  EXPECT_EQ(after[burst.size()], 1u);      // on demand
  EXPECT_EQ(after[burst.size() + 1], 2u);  // the minimum target
}

TEST(DekPoolTest, ASlowSteadyRateKeepsThePoolSmall) {
  Recorder r;
  DekPool pool(r.Generator(), 64, kMaxAge,
               r.clock.AsClock());
  for (int i = 0; i < 10; ++i) {  // one create every 600 ms (the window is 500 ms)
    ASSERT_TRUE(pool.Take().ok());
    pool.WaitUntilIdle();
    r.clock.ms += 600;
  }
  for (size_t n : r.Seen()) EXPECT_LE(n, 2u);
  EXPECT_LE(r.made.load(), 12);  // the 10 creates and at most two ahead
}

}  // namespace
}  // namespace envelope::fs
