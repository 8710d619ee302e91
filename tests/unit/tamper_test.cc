// Tamper tests: an attacker who can write the cipherdir but has no key must
// never make a read return plaintext other than what was written.
#include <gtest/gtest.h>

#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <vector>

#include "core/format/content_file.h"
#include "tests/unit/test_files.h"

namespace envelope::format {
namespace {

using testing::TestVolume;

constexpr uint32_t kChunk = 4096;

Bytes ThreeChunkData() {
  Bytes d(2 * kChunk + 1000);
  for (size_t i = 0; i < d.size(); ++i) d[i] = static_cast<uint8_t>(i * 7 + 3);
  return d;
}

class TamperTest : public ::testing::TestWithParam<bool> {
 protected:
  TamperTest() : vol_(GetParam(), kChunk) {}
  void MakeFile(const std::string& name, const Bytes& data) {
    auto f = vol_.Create(name);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE(f->content->Write(0, data).ok());
  }
  // Zeros the backing bytes of interior chunk `index` of `name` in place;
  // returns the backing file as written.
  Bytes ZeroChunk(const std::string& name, uint64_t index) {
    Bytes b = vol_.ReadBacking(name);
    const size_t at = vol_.layout().ChunkOffset(index);
    std::fill(b.begin() + at, b.begin() + at + vol_.layout().backing_chunk_size(), 0);
    vol_.WriteBacking(name, b);
    return b;
  }
  TestVolume vol_;
};

// Flip one bit of every byte of a 3-chunk file, header included, one at a
// time. Each flip must make reading fail with an error, with one documented
// exception: the spare (inactive) DEK slot holds no input to any read, so a
// flip there reads back the original plaintext while the header reports the
// slot as damaged (fsck's job to name it).
TEST_P(TamperTest, EverySingleByteFlipIsDetected) {
  const Bytes data = ThreeChunkData();
  MakeFile("f", data);
  const Bytes pristine = vol_.ReadBacking("f");
  ASSERT_EQ(pristine.size(), vol_.layout().BackingSize(data.size()));
  const size_t spare_lo = SlotOffset(1), spare_hi = SlotOffset(1) + kSlotSizeInBytes;
  size_t failed = 0, spare = 0;
  for (size_t i = 0; i < pristine.size(); ++i) {
    Bytes bad = pristine;
    bad[i] ^= 0x01;
    vol_.WriteBacking("f", bad);
    auto back = vol_.ReadAll("f");
    const bool in_spare_slot = !GetParam() && i >= spare_lo && i < spare_hi;
    if (in_spare_slot) {
      ASSERT_TRUE(back.ok()) << "byte " << i;
      ASSERT_EQ(*back, data) << "byte " << i;
      auto h = vol_.Open("f");
      ASSERT_TRUE(h.ok());
      ASSERT_EQ(h->header.slot_states[1], SlotState::kDamaged) << "byte " << i;
      ++spare;
    } else {
      ASSERT_FALSE(back.ok()) << "flip at byte " << i << " went unnoticed";
      ++failed;
    }
  }
  EXPECT_EQ(failed + spare, pristine.size());
  std::printf("%zu flips failed the read, %zu hit the spare slot\n", failed, spare);
}

// In xattr mode the wrapped DEK lives in the xattr: damage there is caught.
TEST_P(TamperTest, DamagedXattrIsDetected) {
  if (!GetParam()) GTEST_SKIP() << "header mode";
  MakeFile("f", ThreeChunkData());
  const std::string path = vol_.Path("f");
  char value[600];
  ssize_t n = ::getxattr(path.c_str(), std::string(kDekXattrName).c_str(), value,
                         sizeof(value));
  ASSERT_GT(n, 1);
  for (ssize_t i = 0; i < n; ++i) {
    value[i] ^= 1;
    ASSERT_EQ(::setxattr(path.c_str(), std::string(kDekXattrName).c_str(), value,
                         n, 0), 0);
    EXPECT_FALSE(vol_.ReadAll("f").ok()) << "xattr byte " << i;
    value[i] ^= 1;
  }
  ASSERT_EQ(::removexattr(path.c_str(), std::string(kDekXattrName).c_str()), 0);
  EXPECT_FALSE(vol_.ReadAll("f").ok());
}

TEST_P(TamperTest, SwappedChunksAreDetected) {
  MakeFile("f", ThreeChunkData());
  Bytes b = vol_.ReadBacking("f");
  const size_t c0 = vol_.layout().ChunkOffset(0), c1 = vol_.layout().ChunkOffset(1);
  const size_t len = vol_.layout().backing_chunk_size();
  std::swap_ranges(b.begin() + c0, b.begin() + c0 + len, b.begin() + c1);
  vol_.WriteBacking("f", b);
  auto f = vol_.Open("f");
  ASSERT_TRUE(f.ok());
  Bytes buf(kChunk);
  EXPECT_EQ(f->content->Read(0, buf).status().code(), StatusCode::kCorruption);
  EXPECT_EQ(f->content->Read(kChunk, buf).status().code(), StatusCode::kCorruption);
  // The untouched final chunk still reads: damage stays local.
  EXPECT_TRUE(f->content->Read(2 * kChunk, buf).ok());
}

TEST_P(TamperTest, ChunkMovedFromAnotherFileIsDetected) {
  const Bytes data = ThreeChunkData();
  MakeFile("a", data);
  MakeFile("b", data);  // same plaintext, same size, different DEK and id
  Bytes a = vol_.ReadBacking("a");
  const Bytes b = vol_.ReadBacking("b");
  const size_t c1 = vol_.layout().ChunkOffset(1);
  std::copy(b.begin() + c1, b.begin() + c1 + vol_.layout().backing_chunk_size(),
            a.begin() + c1);
  vol_.WriteBacking("a", a);
  auto f = vol_.Open("a");
  ASSERT_TRUE(f.ok());
  Bytes buf(kChunk);
  EXPECT_TRUE(f->content->Read(0, buf).ok());
  EXPECT_EQ(f->content->Read(kChunk, buf).status().code(), StatusCode::kCorruption);
}

TEST_P(TamperTest, TruncationAtChunkBoundaryIsDetected) {
  MakeFile("f", ThreeChunkData());
  Bytes b = vol_.ReadBacking("f");
  for (uint64_t chunks : {2u, 1u}) {
    Bytes cut(b.begin(), b.begin() + vol_.layout().ChunkOffset(chunks));
    vol_.WriteBacking("f", cut);
    auto f = vol_.Open("f");
    ASSERT_TRUE(f.ok());
    ASSERT_EQ(*f->content->Size(), chunks * kChunk);  // looks plausible...
    Bytes buf(kChunk);
    // ...but the new final chunk was sealed as interior.
    EXPECT_EQ(f->content->Read((chunks - 1) * kChunk, buf).status().code(),
              StatusCode::kCorruption) << chunks;
  }
  // Cutting every chunk leaves a size no valid file has.
  Bytes header_only(b.begin(), b.begin() + vol_.layout().header_size());
  vol_.WriteBacking("f", header_only);
  auto f = vol_.Open("f");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->content->Size().status().code(), StatusCode::kCorruption);
}

// The size is derived from the backing length, so a cut must never yield a
// shorter file that reads cleanly. Header + 28 bytes is the length of the
// empty file: before the final chunk was authenticated, it read as empty.
TEST_P(TamperTest, CutToHeaderAndOneEmptyChunkIsDetected) {
  MakeFile("f", ThreeChunkData());
  Bytes b = vol_.ReadBacking("f");
  b.resize(vol_.layout().header_size() + kChunkOverheadInBytes);
  vol_.WriteBacking("f", b);
  auto f = vol_.Open("f");
  ASSERT_TRUE(f.ok());
  ASSERT_EQ(*f->content->Size(), 0u);  // what stat shows: plausible...
  Bytes buf(kChunk);
  // ...but no read, not even one at the end, treats it as a valid size.
  EXPECT_EQ(f->content->Read(0, buf).status().code(), StatusCode::kCorruption);
  EXPECT_EQ(vol_.ReadAll("f").status().code(), StatusCode::kCorruption);
  // A write does not silently adopt the cut size either.
  EXPECT_EQ(f->content->Write(0, Bytes(kChunk, 1)).code(), StatusCode::kCorruption);
  EXPECT_EQ(f->content->Truncate(10).code(), StatusCode::kCorruption);
  EXPECT_EQ(f->content->VerifyFinalChunk().code(), StatusCode::kCorruption);
}

// Every shorter length of a file written in one go: either the length is
// one no valid file has, or its final chunk fails as final. Each read starts
// at offset 0, away from the end, so it is the size check that catches it.
TEST_P(TamperTest, EveryCutIsDetected) {
  const Bytes data = ThreeChunkData();
  MakeFile("f", data);
  const Bytes b = vol_.ReadBacking("f");
  // Every length within 40 bytes of a chunk start and of the end (where
  // the size rules of docs/FORMAT.md §5 change), and a few in between.
  std::vector<size_t> lengths = {0, 1, vol_.layout().header_size() - 1};
  for (uint64_t i = 0; i <= 3; ++i) {
    const size_t at = std::min<size_t>(vol_.layout().ChunkOffset(i), b.size());
    for (size_t len = at - 40; len < std::min(at + 40, b.size()); ++len) lengths.push_back(len);
    lengths.push_back(std::min<size_t>(at + kChunk / 2, b.size() - 1));
  }
  for (size_t len : lengths) {
    vol_.WriteBacking("f", Bytes(b.begin(), b.begin() + len));
    auto f = vol_.Open("f");
    if (!f.ok()) {
      ASSERT_LT(len, vol_.layout().header_size()) << f.status().ToString();
      continue;
    }
    Bytes buf(16);
    ASSERT_FALSE(f->content->Read(0, buf).ok()) << "cut to " << len << " bytes";
  }
  vol_.WriteBacking("f", b);
  EXPECT_EQ(*vol_.ReadAll("f"), data);
}

// A file cut while it is open: the next read sees a backing length that was
// never authenticated and checks it again.
TEST_P(TamperTest, CutWhileOpenIsDetected) {
  MakeFile("f", ThreeChunkData());
  auto f = vol_.Open("f");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(f->content->VerifyFinalChunk().ok());
  Bytes buf(16);
  ASSERT_TRUE(f->content->Read(0, buf).ok());
  ASSERT_EQ(::truncate(vol_.Path("f").c_str(),
                       vol_.layout().header_size() + kChunkOverheadInBytes),
            0);
  EXPECT_EQ(f->content->Read(0, buf).status().code(), StatusCode::kCorruption);
}

TEST_P(TamperTest, AppendedChunkIsDetected) {
  MakeFile("f", Bytes(2 * kChunk, 0x33));
  Bytes b = vol_.ReadBacking("f");
  // Append a copy of chunk 0: the old final chunk is now interior but that
  // is tolerated only if the new final chunk authenticates, which it won't.
  const size_t c0 = vol_.layout().ChunkOffset(0);
  b.insert(b.end(), b.begin() + c0, b.begin() + c0 + vol_.layout().backing_chunk_size());
  vol_.WriteBacking("f", b);
  auto f = vol_.Open("f");
  ASSERT_TRUE(f.ok());
  Bytes buf(kChunk);
  EXPECT_EQ(f->content->Read(2 * kChunk, buf).status().code(), StatusCode::kCorruption);
}

TEST_P(TamperTest, ZeroedChunkIsDetected) {
  MakeFile("f", ThreeChunkData());
  ZeroChunk("f", 1);
  auto f = vol_.Open("f");
  ASSERT_TRUE(f.ok());
  Bytes buf(kChunk);
  EXPECT_EQ(f->content->Read(kChunk, buf).status().code(), StatusCode::kCorruption);
}

TEST_P(TamperTest, HeaderFromAnotherFileIsDetected) {
  const Bytes data = ThreeChunkData();
  MakeFile("a", data);
  MakeFile("b", data);
  Bytes a = vol_.ReadBacking("a");
  const Bytes b = vol_.ReadBacking("b");
  std::copy(b.begin(), b.begin() + vol_.layout().header_size(), a.begin());
  vol_.WriteBacking("a", a);
  if (GetParam()) {
    // The xattr still names a's DEK: b's commitment and id do not match it.
    EXPECT_FALSE(vol_.Open("a").ok());
  } else {
    // b's header opens b's DEK, whose chunk key cannot open a's chunks.
    auto back = vol_.ReadAll("a");
    EXPECT_FALSE(back.ok());
  }
}

// The header version says whether all-zero interior chunks are holes. It is
// bound into the key commitment, so flipping it either way without the DEK
// stops the file from opening at all.
class VersionFlipTest : public TamperTest {
 protected:
  // Rewrites f's version from `from` to `to` and checks that it no longer opens.
  void FlipAndExpectRefusal(uint16_t from, uint16_t to) {
    Bytes b = vol_.ReadBacking("f");
    ASSERT_EQ(DecodeFixed16(b.data() + 8), from);
    EncodeFixed16(b.data() + 8, to);
    vol_.WriteBacking("f", b);
    auto f = vol_.Open("f");
    ASSERT_FALSE(f.ok());
    EXPECT_NE(f.status().message().find("key commitment mismatch"), std::string::npos);
  }
};

TEST_P(VersionFlipTest, ToSparseIsDetected) {
  MakeFile("f", ThreeChunkData());
  FlipAndExpectRefusal(kFormatVersionDense, kFormatVersionSparse);
}

TEST_P(VersionFlipTest, ToDenseIsDetected) {
  MakeFile("f", ThreeChunkData());
  {
    auto f = vol_.Open("f");
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE(f->content->Truncate(10 * kChunk).ok());  // leaves holes
    ASSERT_TRUE(f->content->sparse());
  }
  FlipAndExpectRefusal(kFormatVersionSparse, kFormatVersionDense);
}

// What a sparse file gives up, and only there: an interior chunk zeroed by
// someone with write access to the cipherdir reads as a hole (zeros), as in
// gocryptfs. Its final chunk still authenticates the size.
TEST_P(TamperTest, ZeroedChunkOfSparseFileReadsAsHole) {
  const Bytes data = ThreeChunkData();
  {
    auto f = vol_.Create("f");
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE(f->content->Write(0, data).ok());
    ASSERT_TRUE(f->content->Truncate(6 * kChunk).ok());
    ASSERT_TRUE(f->content->sparse());
  }
  Bytes b = ZeroChunk("f", 1);
  auto f = vol_.Open("f");
  ASSERT_TRUE(f.ok());
  Bytes buf(kChunk, 0xff);
  ASSERT_TRUE(f->content->Read(kChunk, buf).ok());
  EXPECT_EQ(buf, Bytes(kChunk, 0));

  // The final chunk zeroed: the size no longer authenticates.
  const size_t last = vol_.layout().ChunkOffset(5);
  std::fill(b.begin() + last, b.end(), 0);
  vol_.WriteBacking("f", b);
  auto back = vol_.ReadAll("f");
  ASSERT_FALSE(back.ok());
  EXPECT_EQ(back.status().code(), StatusCode::kCorruption);
}

INSTANTIATE_TEST_SUITE_P(Modes, TamperTest, ::testing::Bool(),
                         [](const auto& info) {
                           return std::string(info.param ? "Xattr" : "Header");
                         });
INSTANTIATE_TEST_SUITE_P(Modes, VersionFlipTest, ::testing::Bool(),
                         [](const auto& info) {
                           return std::string(info.param ? "Xattr" : "Header");
                         });

}  // namespace
}  // namespace envelope::format
