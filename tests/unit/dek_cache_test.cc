#include "fs/dek_cache.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>

#include "core/crypto/secret_bytes.h"

namespace envelope::fs {
namespace {

std::shared_ptr<const crypto::SecretBytes> Dek(uint8_t fill) {
  auto dek = crypto::SecretBytes::Zeroed(32);
  if (!dek.ok()) std::abort();
  std::memset(dek->data(), fill, dek->size());
  return std::make_shared<const crypto::SecretBytes>(std::move(*dek));
}

// Wrapped blobs of one master key share a long prefix, as real ones do.
std::string Wrapped(int i) { return std::string(120, 'k') + std::to_string(i); }

TEST(DekCacheTest, FindsWhatWasInserted) {
  DekCache cache(8, std::chrono::seconds(600));
  EXPECT_EQ(cache.Find(Wrapped(1)), nullptr);
  cache.Insert(Wrapped(1), Dek(1));
  cache.Insert(Wrapped(2), Dek(2));
  auto one = cache.Find(Wrapped(1));
  ASSERT_NE(one, nullptr);
  EXPECT_EQ(one->data()[0], 1);
  EXPECT_EQ(cache.Find(Wrapped(2))->data()[0], 2);
  EXPECT_EQ(cache.size(), 2u);
}

TEST(DekCacheTest, InsertingAgainReplacesTheKeyInPlace) {
  DekCache cache(2, std::chrono::seconds(600));
  cache.Insert(Wrapped(1), Dek(1));
  cache.Insert(Wrapped(1), Dek(9));
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(cache.Find(Wrapped(1))->data()[0], 9);
}

TEST(DekCacheTest, TheLeastRecentlyUsedGoesFirst) {
  DekCache cache(3, std::chrono::seconds(600));
  cache.Insert(Wrapped(1), Dek(1));
  cache.Insert(Wrapped(2), Dek(2));
  cache.Insert(Wrapped(3), Dek(3));
  ASSERT_NE(cache.Find(Wrapped(1)), nullptr);  // 2 is now the oldest
  cache.Insert(Wrapped(1), Dek(1));            // a re-insert is a use too
  cache.Insert(Wrapped(4), Dek(4));
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_EQ(cache.Find(Wrapped(2)), nullptr);
  EXPECT_NE(cache.Find(Wrapped(1)), nullptr);
  EXPECT_NE(cache.Find(Wrapped(3)), nullptr);
  EXPECT_NE(cache.Find(Wrapped(4)), nullptr);
  // Many more than fit: the count stays bounded and the newest are there.
  for (int i = 5; i < 1000; ++i) cache.Insert(Wrapped(i), Dek(static_cast<uint8_t>(i)));
  EXPECT_EQ(cache.size(), 3u);
  for (int i = 997; i < 1000; ++i) EXPECT_NE(cache.Find(Wrapped(i)), nullptr) << i;
  EXPECT_EQ(cache.Find(Wrapped(996)), nullptr);
}

TEST(DekCacheTest, ExpiredEntriesAreNotReturned) {
  DekCache cache(8, std::chrono::seconds(0));
  cache.Insert(Wrapped(1), Dek(1));
  // max_age 0: anything inserted before now has expired once the clock moves.
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() == start) {
  }
  EXPECT_EQ(cache.Find(Wrapped(1)), nullptr);
  EXPECT_EQ(cache.size(), 0u);
}

TEST(DekCacheTest, ZeroEntriesCachesNothing) {
  DekCache cache(0, std::chrono::seconds(600));
  cache.Insert(Wrapped(1), Dek(1));
  EXPECT_EQ(cache.Find(Wrapped(1)), nullptr);
}

}  // namespace
}  // namespace envelope::fs
