#include "core/format/chunk_layout.h"

#include <gtest/gtest.h>

namespace envelope::format {
namespace {

TEST(ChunkLayoutTest, RejectsBadParameters) {
  EXPECT_FALSE(ChunkLayout::New(kHeaderSizeDekInHeader, 0).ok());
  EXPECT_FALSE(ChunkLayout::New(kHeaderSizeDekInHeader, 2048).ok());
  EXPECT_FALSE(ChunkLayout::New(kHeaderSizeDekInHeader, 4095).ok());
  EXPECT_FALSE(ChunkLayout::New(kHeaderSizeDekInHeader, 6144).ok());
  EXPECT_FALSE(ChunkLayout::New(kHeaderSizeDekInHeader, 2u << 20).ok());
  EXPECT_FALSE(ChunkLayout::New(100, 4096).ok());
  EXPECT_TRUE(ChunkLayout::New(kHeaderSizeDekInXattr, 1u << 20).ok());
}

TEST(ChunkLayoutTest, WorkedSizesFromFormatDoc) {
  auto l = *ChunkLayout::ForVolume(false, 4096);
  EXPECT_EQ(l.BackingSize(0), 1088u + 28);
  EXPECT_EQ(l.BackingSize(1), 1088u + 1 + 28);
  EXPECT_EQ(l.BackingSize(4096), 1088u + 4096 + 28);
  EXPECT_EQ(l.BackingSize(4097), 1088u + 4097 + 2 * 28);
  EXPECT_EQ(l.BackingSize(10000), 1088u + 10000 + 3 * 28);
  auto x = *ChunkLayout::ForVolume(true, 16384);
  EXPECT_EQ(x.BackingSize(1u << 20), 64u + (1u << 20) + 64 * 28);
}

TEST(ChunkLayoutTest, PlaintextSizeInvertsBackingSize) {
  for (uint32_t chunk : {4096u, 16384u}) {
    for (bool xattr : {false, true}) {
      auto l = *ChunkLayout::ForVolume(xattr, chunk);
      for (uint64_t p = 0; p < 5 * uint64_t{chunk} + 3; ++p) {
        auto back = l.PlaintextSize(l.BackingSize(p));
        ASSERT_TRUE(back.ok()) << p;
        ASSERT_EQ(*back, p);
      }
    }
  }
}

TEST(ChunkLayoutTest, ImpossibleBackingSizesAreCorruption) {
  auto l = *ChunkLayout::ForVolume(false, 4096);
  const uint64_t h = l.header_size();
  const uint64_t bc = l.backing_chunk_size();
  for (uint64_t bad : {uint64_t{0}, h, h + 27, h + bc + 1, h + bc + 27, h + bc + 28,
                       h + 2 * bc + 28}) {
    auto s = l.PlaintextSize(bad);
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.status().code(), StatusCode::kCorruption) << bad;
  }
}

TEST(ChunkLayoutTest, ChunkSizesAndOffsets) {
  auto l = *ChunkLayout::ForVolume(false, 4096);
  EXPECT_EQ(l.ChunkCount(0), 1u);
  EXPECT_EQ(l.ChunkCount(4096), 1u);
  EXPECT_EQ(l.ChunkCount(4097), 2u);
  EXPECT_EQ(l.ChunkPlaintextSize(0, 0), 0u);
  EXPECT_EQ(l.ChunkPlaintextSize(0, 5000), 4096u);
  EXPECT_EQ(l.ChunkPlaintextSize(1, 5000), 904u);
  EXPECT_EQ(l.ChunkOffset(0), 1088u);
  EXPECT_EQ(l.ChunkOffset(2), 1088u + 2 * 4124);
  EXPECT_LT(l.BackingSize(l.MaxPlaintextSize()), uint64_t{1} << 63);
}

}  // namespace
}  // namespace envelope::format
