#include "fs/dek_pool.h"

#include <gtest/gtest.h>

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
  EXPECT_EQ(made.load(), 9);  // the first, made on demand, then a full pool
  pool.WaitUntilIdle();
  EXPECT_EQ(made.load(), 9);  // idle: no refill is wanted, none runs
}

TEST(DekPoolTest, RefillsInOneBatchOnceDownToHalf) {
  std::atomic<int> made{0};
  std::atomic<bool> fail{false};
  FakeClock clock;
  std::vector<size_t> requests;
  std::mutex requests_mu;
  auto seen = [&] {
    std::lock_guard lock(requests_mu);
    return requests;
  };
  DekPool pool(Counting(&made, &fail, &clock, &requests, &requests_mu), 8, kMaxAge,
               clock.AsClock());
  ASSERT_TRUE(pool.Take().ok());  // the pool is empty: one made on demand, then the batch
  pool.WaitUntilIdle();
  EXPECT_EQ(seen(), (std::vector<size_t>{1, 8}));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(pool.Take().ok());  // 5 left: above half
  pool.WaitUntilIdle();
  EXPECT_EQ(seen(), (std::vector<size_t>{1, 8}));
  ASSERT_TRUE(pool.Take().ok());  // 4 left: half, so one batch of 4
  pool.WaitUntilIdle();
  EXPECT_EQ(seen(), (std::vector<size_t>{1, 8, 4}));
}

TEST(DekPoolTest, StaleEntriesAreDroppedAndErrorsReachTheCaller) {
  std::atomic<int> made{0};
  std::atomic<bool> fail{false};
  FakeClock clock;
  DekPool pool(Counting(&made, &fail, &clock), 4, kMaxAge, clock.AsClock());
  ASSERT_TRUE(pool.Take().ok());
  pool.WaitUntilIdle();
  ASSERT_EQ(made.load(), 5);
  clock.ms += kMaxAge.count();  // exactly max_age old: still good
  auto fresh = pool.Take();
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh->file_id[0], 2);  // the pool's oldest, not one made now
  pool.WaitUntilIdle();
  EXPECT_EQ(made.load(), 5);  // 3 left: above half, no refill
  clock.ms += 1;  // one more millisecond: everything in the pool is too old
  fail = true;
  auto e = pool.Take();
  EXPECT_EQ(e.status().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace envelope::fs
