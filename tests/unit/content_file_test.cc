#include "core/format/content_file.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "tests/unit/test_files.h"

namespace envelope::format {
namespace {

using testing::TestVolume;

Bytes Pattern(size_t n, uint8_t seed) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(seed + i * 31 + (i >> 8));
  return b;
}

class ContentFileTest : public ::testing::TestWithParam<std::tuple<bool, uint32_t>> {
 protected:
  ContentFileTest() : vol_(std::get<0>(GetParam()), std::get<1>(GetParam())) {}
  uint32_t chunk() const { return std::get<1>(GetParam()); }
  TestVolume vol_;
};

TEST_P(ContentFileTest, NewFileIsEmpty) {
  auto f = vol_.Create("f");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*f->content->Size(), 0u);
  Bytes buf(10);
  EXPECT_EQ(*f->content->Read(0, buf), 0u);
  EXPECT_EQ(vol_.ReadBacking("f").size(), vol_.layout().BackingSize(0));
  EXPECT_TRUE(f->content->VerifyAll().ok());
}

TEST_P(ContentFileTest, WriteReadAcrossChunkBoundaries) {
  auto f = vol_.Create("f");
  ASSERT_TRUE(f.ok());
  for (uint64_t size : {uint64_t{1}, uint64_t{chunk()} - 1, uint64_t{chunk()},
                        uint64_t{chunk()} + 1, 3 * uint64_t{chunk()} + 17}) {
    Bytes data = Pattern(size, static_cast<uint8_t>(size));
    ASSERT_TRUE(f->content->Truncate(0).ok());
    ASSERT_TRUE(f->content->Write(0, data).ok());
    EXPECT_EQ(*f->content->Size(), size);
    auto back = vol_.ReadAll("f");
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, data);
    EXPECT_EQ(vol_.ReadBacking("f").size(), vol_.layout().BackingSize(size));
  }
}

TEST_P(ContentFileTest, WritePastEndLeavesZeroGap) {
  auto f = vol_.Create("f");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(f->content->Write(0, Pattern(10, 1)).ok());
  const uint64_t far = 5 * uint64_t{chunk()} + 123;
  ASSERT_TRUE(f->content->Write(far, Pattern(7, 2)).ok());
  auto back = vol_.ReadAll("f");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->size(), far + 7);
  Bytes want(far + 7, 0);
  Bytes a = Pattern(10, 1), b = Pattern(7, 2);
  std::copy(a.begin(), a.end(), want.begin());
  std::copy(b.begin(), b.end(), want.begin() + far);
  EXPECT_EQ(*back, want);
  EXPECT_TRUE(f->content->VerifyAll().ok());
}

TEST_P(ContentFileTest, TruncateDownAndUp) {
  auto f = vol_.Create("f");
  ASSERT_TRUE(f.ok());
  Bytes data = Pattern(4 * chunk() + 100, 9);
  ASSERT_TRUE(f->content->Write(0, data).ok());
  for (uint64_t size : {uint64_t{3} * chunk() + 5, uint64_t{2} * chunk(),
                        uint64_t{chunk()} / 2, uint64_t{0}}) {
    ASSERT_TRUE(f->content->Truncate(size).ok());
    data.resize(size);
    auto back = vol_.ReadAll("f");
    ASSERT_TRUE(back.ok()) << size << " " << back.status().ToString();
    EXPECT_EQ(*back, data);
  }
  ASSERT_TRUE(f->content->Write(0, Pattern(50, 3)).ok());
  ASSERT_TRUE(f->content->Truncate(2 * chunk() + 1).ok());
  Bytes want(2 * chunk() + 1, 0);
  Bytes p = Pattern(50, 3);
  std::copy(p.begin(), p.end(), want.begin());
  EXPECT_EQ(*vol_.ReadAll("f"), want);
}

TEST_P(ContentFileTest, ReadPastEndIsShort) {
  auto f = vol_.Create("f");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(f->content->Write(0, Pattern(100, 4)).ok());
  Bytes buf(1000);
  EXPECT_EQ(*f->content->Read(90, buf), 10u);
  EXPECT_EQ(*f->content->Read(100, buf), 0u);
  EXPECT_EQ(*f->content->Read(1u << 30, buf), 0u);
}

TEST_P(ContentFileTest, EmptyWriteDoesNotExtend) {
  auto f = vol_.Create("f");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(f->content->Write(1000, ByteView()).ok());
  EXPECT_EQ(*f->content->Size(), 0u);
}

TEST_P(ContentFileTest, LargeWriteSpansBatches) {
  auto f = vol_.Create("f");
  ASSERT_TRUE(f.ok());
  Bytes data = Pattern(ContentFile::kBatchSizeInBytes * 2 + 12345, 5);
  ASSERT_TRUE(f->content->Write(77, data).ok());
  Bytes back(data.size());
  ASSERT_EQ(*f->content->Read(77, back), data.size());
  EXPECT_EQ(back, data);
  ASSERT_TRUE(f->content->Truncate(3 * ContentFile::kBatchSizeInBytes).ok());
  EXPECT_TRUE(f->content->VerifyAll().ok());
}

TEST_P(ContentFileTest, LargeOverwritesAtOddOffsetsKeepEveryByte) {
  // Writes large enough that their whole chunks are sealed in parallel
  // parts, over old content, starting and ending inside chunks and on
  // chunk boundaries, checked against a reference copy.
  auto f = vol_.Create("f");
  ASSERT_TRUE(f.ok());
  const uint64_t chunk = this->chunk();
  Bytes ref = Pattern(3 * ContentFile::kBatchSizeInBytes + 999, 7);
  ASSERT_TRUE(f->content->Write(0, ref).ok());
  const struct {
    uint64_t offset, length;
  } writes[] = {
      {1, 2 * ContentFile::kBatchSizeInBytes},                 // inside chunks at both ends
      {chunk, 200 * chunk},                                    // on boundaries
      {5 * chunk + 17, 130 * chunk},                           // odd start, boundary end
      {ref.size() - 70 * chunk - 5, 90 * chunk},               // across the old end
  };
  uint8_t seed = 11;
  for (const auto& w : writes) {
    Bytes data = Pattern(w.length, seed++);
    ASSERT_TRUE(f->content->Write(w.offset, data).ok());
    if (ref.size() < w.offset + w.length) ref.resize(w.offset + w.length);
    std::copy(data.begin(), data.end(), ref.begin() + static_cast<ptrdiff_t>(w.offset));
  }
  Bytes back(ref.size());
  ASSERT_EQ(*f->content->Read(0, back), ref.size());
  EXPECT_TRUE(back == ref);
  EXPECT_TRUE(f->content->VerifyAll().ok());
}

TEST_P(ContentFileTest, AppendsInPiecesReadBackAfterReopen) {
  // Pieces that end inside chunks: each append starts from the final
  // chunk's plaintext that the previous one kept.
  auto f = vol_.Create("f");
  ASSERT_TRUE(f.ok());
  Bytes ref;
  uint8_t seed = 1;
  for (uint64_t piece : {1000u, 5000u, 1u, 3u * 4096u, 777u, 4096u, 2u}) {
    Bytes data = Pattern(piece, seed++);
    ASSERT_TRUE(f->content->Write(ref.size(), data).ok());
    ref.insert(ref.end(), data.begin(), data.end());
  }
  // A truncate down and an append after it, then a truncate up.
  ASSERT_TRUE(f->content->Truncate(ref.size() - 300).ok());
  ref.resize(ref.size() - 300);
  Bytes more = Pattern(123, 99);
  ASSERT_TRUE(f->content->Write(ref.size(), more).ok());
  ref.insert(ref.end(), more.begin(), more.end());
  ASSERT_TRUE(f->content->Truncate(ref.size() + 5000).ok());
  ref.resize(ref.size() + 5000, 0);
  ASSERT_TRUE(f->content->Write(ref.size(), more).ok());
  ref.insert(ref.end(), more.begin(), more.end());
  // Zeros written into the first chunk only (the final chunk untouched),
  // then one more append.
  ASSERT_TRUE(f->content->PunchHole(10, 100).ok());
  std::fill(ref.begin() + 10, ref.begin() + 110, 0);
  ASSERT_TRUE(f->content->Write(ref.size(), more).ok());
  ref.insert(ref.end(), more.begin(), more.end());
  auto back = vol_.ReadAll("f");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(*back == ref);
}

TEST_P(ContentFileTest, KeptTailIsNotUsedOnceTheSizeChanged) {
  // Against the contract, a second object writes the file: its final chunk
  // now holds other bytes, of the same length as the first object's kept
  // tail. The size differs, so the first object reads the chunk back.
  auto f1 = vol_.Create("f");
  ASSERT_TRUE(f1.ok());
  const uint64_t c = chunk();
  Bytes a = Pattern(c + c / 2, 1);
  ASSERT_TRUE(f1->content->Write(0, a).ok());
  auto f2 = vol_.Open("f");
  ASSERT_TRUE(f2.ok());
  Bytes b = Pattern(c, 2);
  ASSERT_TRUE(f2->content->Write(a.size(), b).ok());  // final chunk: c/2 bytes of b
  Bytes tail = Pattern(10, 3);
  ASSERT_TRUE(f1->content->Write(a.size() + b.size(), tail).ok());
  Bytes ref = a;
  ref.insert(ref.end(), b.begin(), b.end());
  ref.insert(ref.end(), tail.begin(), tail.end());
  auto back = vol_.ReadAll("f");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(*back == ref);
}

TEST_P(ContentFileTest, ConcurrentReadsSeeTheContent) {
  // The FUSE layer lets reads of one file run in parallel: each takes its
  // own cipher context and buffers. Threads read random ranges at once.
  auto f = vol_.Create("f");
  ASSERT_TRUE(f.ok());
  Bytes data = Pattern(ContentFile::kBatchSizeInBytes * 3 + 999, 9);
  ASSERT_TRUE(f->content->Write(0, data).ok());
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      for (int i = 0; i < 200; ++i) {
        const uint64_t offset = rng() % data.size();
        Bytes out(1 + rng() % (2 * ContentFile::kBatchSizeInBytes));
        auto n = f->content->Read(offset, out);
        const uint64_t want = std::min<uint64_t>(out.size(), data.size() - offset);
        if (!n.ok() || *n != want ||
            !std::equal(out.begin(), out.begin() + want, data.begin() + offset)) {
          ++wrong;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST_P(ContentFileTest, TooLargeIsEfbig) {
  auto f = vol_.Create("f");
  ASSERT_TRUE(f.ok());
  Status s = f->content->Truncate(vol_.layout().MaxPlaintextSize() + 1);
  EXPECT_EQ(ToErrno(s), EFBIG);
  s = f->content->Write(vol_.layout().MaxPlaintextSize(), Pattern(1, 1));
  EXPECT_EQ(ToErrno(s), EFBIG);
}

// The state an extending write leaves if it is killed after writing the new
// chunks and before re-sealing the old final chunk: every byte stays
// readable (docs/FORMAT.md, "Writes").
TEST_P(ContentFileTest, InterruptedExtensionStaysReadable) {
  auto f = vol_.Create("f");
  ASSERT_TRUE(f.ok());
  Bytes first = Pattern(chunk(), 1);
  ASSERT_TRUE(f->content->Write(0, first).ok());
  Bytes before = vol_.ReadBacking("f");  // chunk 0 sealed as last
  Bytes second = Pattern(chunk() / 2, 2);
  ASSERT_TRUE(f->content->Write(chunk(), second).ok());
  Bytes after = vol_.ReadBacking("f");  // chunk 0 interior, chunk 1 last
  Bytes crashed = after;
  const size_t c0 = vol_.layout().ChunkOffset(0);
  std::copy(before.begin() + c0, before.end(), crashed.begin() + c0);
  vol_.WriteBacking("f", crashed);
  Bytes want = first;
  want.insert(want.end(), second.begin(), second.end());
  auto back = vol_.ReadAll("f");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, want);
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, ContentFileTest,
    ::testing::Combine(::testing::Bool(), ::testing::Values(4096u, 16384u)),
    [](const auto& info) {
      return std::string(std::get<0>(info.param) ? "Xattr" : "Header") +
             std::to_string(std::get<1>(info.param));
    });

}  // namespace
}  // namespace envelope::format
