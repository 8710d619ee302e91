#include "fs/dek_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace envelope::fs {
namespace {

// Makes numbered entries and records the size of each request.
DekPool::Generator Counting(std::atomic<int>* made, std::atomic<bool>* fail,
                            std::vector<size_t>* requests = nullptr,
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
      e.made = std::chrono::steady_clock::now();
      out.push_back(std::move(e));
    }
    return out;
  };
}

TEST(DekPoolTest, EveryEntryIsHandedOutOnce) {
  std::atomic<int> made{0};
  std::atomic<bool> fail{false};
  DekPool pool(Counting(&made, &fail), 8, std::chrono::milliseconds(5000));
  std::set<format::FileId> ids;
  for (int i = 0; i < 100; ++i) {
    auto e = pool.Take();
    ASSERT_TRUE(e.ok());
    EXPECT_TRUE(ids.insert(e->file_id).second);
  }
}

TEST(DekPoolTest, RefillsAheadAfterATake) {
  std::atomic<int> made{0};
  std::atomic<bool> fail{false};
  DekPool pool(Counting(&made, &fail), 8, std::chrono::milliseconds(5000));
  ASSERT_TRUE(pool.Take().ok());
  for (int i = 0; i < 200 && made < 9; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_GE(made.load(), 9);  // the first, made on demand, then a full pool
  const int before = made;
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(made.load(), before);  // idle: no more keys are made
}

TEST(DekPoolTest, RefillsInOneBatchOnceDownToHalf) {
  std::atomic<int> made{0};
  std::atomic<bool> fail{false};
  std::vector<size_t> requests;
  std::mutex requests_mu;
  auto seen = [&] {
    std::lock_guard lock(requests_mu);
    return requests;
  };
  DekPool pool(Counting(&made, &fail, &requests, &requests_mu), 8,
               std::chrono::milliseconds(5000));
  ASSERT_TRUE(pool.Take().ok());  // the pool is empty: one made on demand
  for (int i = 0; i < 200 && made < 9; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(seen(), (std::vector<size_t>{1, 8}));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(pool.Take().ok());  // 5 left: above half
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(seen(), (std::vector<size_t>{1, 8}));
  ASSERT_TRUE(pool.Take().ok());  // 4 left: half, so one batch of 4
  for (int i = 0; i < 200 && made < 13; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(seen(), (std::vector<size_t>{1, 8, 4}));
}

TEST(DekPoolTest, StaleEntriesAreDroppedAndErrorsReachTheCaller) {
  std::atomic<int> made{0};
  std::atomic<bool> fail{false};
  DekPool pool(Counting(&made, &fail), 4, std::chrono::milliseconds(30));
  ASSERT_TRUE(pool.Take().ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  fail = true;
  auto e = pool.Take();  // everything in the pool is too old now
  EXPECT_EQ(e.status().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace envelope::fs
