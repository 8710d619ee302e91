#include <gtest/gtest.h>

#include "keyservice/kms_service.h"

namespace envelope::keyservice {
namespace {

// The secure-heap reserve: new key material may not take the last
// `reserve_percent` of the arena, which stays for data keys and plaintexts.
TEST(NewMaterialFitsTest, KeepsTheReserveFree) {
  const crypto::SecureHeapUsage empty{1 << 20, 0};
  EXPECT_TRUE(NewMaterialFits(empty, 32, 25));
  // The reserve is size / 100 * percent: at most 1% of the heap less than
  // the exact share, which only matters for tiny heaps.
  const size_t reserve = (size_t{1} << 20) / 100 * 25;
  const size_t limit = (size_t{1} << 20) - reserve;
  EXPECT_TRUE(NewMaterialFits({1 << 20, limit - 32}, 32, 25));
  EXPECT_FALSE(NewMaterialFits({1 << 20, limit - 31}, 32, 25));
  EXPECT_FALSE(NewMaterialFits({1 << 20, 1 << 20}, 32, 25));
  // A bigger reserve refuses sooner.
  EXPECT_FALSE(NewMaterialFits({1 << 20, 1 << 19}, 32, 60));
  EXPECT_TRUE(NewMaterialFits({1 << 20, 1 << 19}, 32, 40));
}

TEST(NewMaterialFitsTest, HeapNotSetUpIsNotLimitedHere) {
  EXPECT_TRUE(NewMaterialFits({0, 0}, 32, 25));
}

TEST(NewMaterialFitsTest, ReportsTheRealHeap) {
  ASSERT_TRUE(crypto::InitSecureHeap().ok());
  // The CSPRNG keeps its own state in the secure heap once first used.
  ASSERT_TRUE(crypto::SecretBytes::Random(32).ok());
  auto before = crypto::GetSecureHeapUsage();
  EXPECT_EQ(before.size_in_bytes, crypto::kDefaultSecureHeapSizeInBytes);
  auto key = crypto::SecretBytes::Zeroed(32);
  ASSERT_TRUE(key.ok());
  auto after = crypto::GetSecureHeapUsage();
  EXPECT_EQ(after.used_in_bytes, before.used_in_bytes + 32);
}

}  // namespace
}  // namespace envelope::keyservice
