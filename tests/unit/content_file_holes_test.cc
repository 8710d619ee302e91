// Holes (docs/FORMAT.md §6): growth leaves all-zero interior chunks
// unwritten, the header turns version 2 first, and the fallocate family and
// SEEK_DATA/SEEK_HOLE work at chunk granularity.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <tuple>

#include "core/format/content_file.h"
#include "tests/unit/test_files.h"

namespace envelope::format {
namespace {

using testing::TestVolume;

Bytes Pattern(size_t n, uint8_t seed) {
  Bytes d(n);
  for (size_t i = 0; i < n; ++i) d[i] = static_cast<uint8_t>(i * 31 + seed);
  return d;
}

class ContentFileHolesTest : public ::testing::TestWithParam<std::tuple<bool, uint32_t>> {
 protected:
  ContentFileHolesTest() : vol_(std::get<0>(GetParam()), std::get<1>(GetParam())) {}
  uint64_t chunk() const { return vol_.layout().chunk_size(); }
  // Bytes the backing file occupies on disk.
  uint64_t Allocated(const std::string& name) const {
    struct stat st;
    EXPECT_EQ(::stat(vol_.Path(name).c_str(), &st), 0);
    return static_cast<uint64_t>(st.st_blocks) * 512;
  }
  uint16_t Version(const std::string& name) const {
    UniqueFd fd(::open(vol_.Path(name).c_str(), O_RDONLY | O_CLOEXEC));
    uint8_t prefix[10] = {};
    EXPECT_EQ(::pread(fd.get(), prefix, sizeof(prefix), 0), 10);
    return DecodeFixed16(prefix + 8);
  }
  Bytes ReadAt(ContentFile& c, uint64_t off, size_t n) {
    Bytes out(n, 0xee);
    auto got = c.Read(off, out);
    EXPECT_TRUE(got.ok()) << got.status().ToString();
    out.resize(got.ok() ? *got : 0);
    return out;
  }
  TestVolume vol_;
};

TEST_P(ContentFileHolesTest, TruncateUpCostsNoDisk) {
  auto f = vol_.Create("f");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(f->content->Write(0, Pattern(1000, 1)).ok());
  EXPECT_EQ(Version("f"), kFormatVersionDense);
  const uint64_t big = uint64_t{100} << 30;  // 100 GiB
  ASSERT_TRUE(f->content->Truncate(big).ok());
  EXPECT_EQ(*f->content->Size(), big);
  EXPECT_LT(Allocated("f"), uint64_t{1} << 20);
  EXPECT_EQ(Version("f"), kFormatVersionSparse);
  // Reopened from disk, as a new mount would.
  auto g = vol_.Open("f");
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_TRUE(g->content->sparse());
  EXPECT_EQ(ReadAt(*g->content, 0, 1000), Pattern(1000, 1));
  EXPECT_EQ(ReadAt(*g->content, 1000, 3 * chunk()), Bytes(3 * chunk(), 0));
  EXPECT_EQ(ReadAt(*g->content, big / 2, 10), Bytes(10, 0));
  EXPECT_EQ(ReadAt(*g->content, big - 5, 100), Bytes(5, 0));
  // fsck --deep skips what holds no data (here: all but two chunks).
  EXPECT_TRUE(g->content->VerifyAll().ok());
}

TEST_P(ContentFileHolesTest, GapInsideOneChunkStaysDense) {
  auto f = vol_.Create("f");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(f->content->Write(0, Pattern(10, 1)).ok());
  ASSERT_TRUE(f->content->Write(chunk() + 5, Pattern(10, 2)).ok());  // touches chunk 1 only
  EXPECT_EQ(Version("f"), kFormatVersionDense);
  EXPECT_FALSE(f->content->sparse());
  ASSERT_TRUE(f->content->Write(5 * chunk(), Pattern(10, 3)).ok());  // chunks 2..4 skipped
  EXPECT_EQ(Version("f"), kFormatVersionSparse);
  auto back = vol_.ReadAll("f");
  ASSERT_TRUE(back.ok());
  Bytes want(5 * chunk() + 10, 0);
  std::copy_n(Pattern(10, 1).begin(), 10, want.begin());
  std::copy_n(Pattern(10, 2).begin(), 10, want.begin() + chunk() + 5);
  std::copy_n(Pattern(10, 3).begin(), 10, want.begin() + 5 * chunk());
  EXPECT_EQ(*back, want);
}

TEST_P(ContentFileHolesTest, WriteAtOneTebibyteAndSeek) {
  auto f = vol_.Create("f");
  ASSERT_TRUE(f.ok());
  const uint64_t far = uint64_t{1} << 40;
  ASSERT_TRUE(f->content->Write(0, Pattern(100, 1)).ok());
  ASSERT_TRUE(f->content->Write(far, Pattern(4096, 2)).ok());
  EXPECT_EQ(*f->content->Size(), far + 4096);
  EXPECT_LT(Allocated("f"), uint64_t{1} << 20);
  EXPECT_EQ(ReadAt(*f->content, far, 4096), Pattern(4096, 2));

  EXPECT_EQ(*f->content->SeekData(0), 0u);
  EXPECT_EQ(*f->content->SeekData(50), 50u);
  EXPECT_EQ(*f->content->SeekHole(0), chunk());  // chunk 0 holds data
  const uint64_t data_at = far / chunk() * chunk();
  EXPECT_EQ(*f->content->SeekData(chunk()), data_at);
  EXPECT_EQ(*f->content->SeekHole(data_at), far + 4096);  // only the end after it
  EXPECT_EQ(*f->content->SeekHole(chunk() * 7 + 3), chunk() * 7 + 3);
  auto past = f->content->SeekData(far + 4096);
  ASSERT_FALSE(past.ok());
  EXPECT_EQ(past.status().sys_errno(), ENXIO);
  EXPECT_EQ(f->content->SeekHole(far + 5000).status().sys_errno(), ENXIO);
}

TEST_P(ContentFileHolesTest, DenseFileSeeksAsAllData) {
  auto f = vol_.Create("f");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(f->content->Write(0, Pattern(3 * chunk() + 7, 1)).ok());
  EXPECT_EQ(*f->content->SeekData(chunk() + 1), chunk() + 1);
  EXPECT_EQ(*f->content->SeekHole(1), 3 * chunk() + 7);
}

TEST_P(ContentFileHolesTest, PunchHoleFreesSpaceAndReadsZeros) {
  auto f = vol_.Create("f");
  ASSERT_TRUE(f.ok());
  const Bytes data = Pattern(64 * chunk() + 123, 4);
  ASSERT_TRUE(f->content->Write(0, data).ok());
  const uint64_t before = Allocated("f");
  // From the middle of chunk 3 to the middle of chunk 60.
  const uint64_t off = 3 * chunk() + 100, len = 57 * chunk();
  ASSERT_TRUE(f->content->PunchHole(off, len).ok());
  EXPECT_EQ(*f->content->Size(), data.size());
  EXPECT_LT(Allocated("f"), before - 50 * chunk());
  Bytes want = data;
  std::fill(want.begin() + off, want.begin() + off + len, 0);
  auto back = vol_.ReadAll("f");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, want);
  EXPECT_EQ(*f->content->SeekHole(0), 4 * chunk());
  EXPECT_EQ(*f->content->SeekData(4 * chunk()), 60 * chunk());
  // Punching across the end zeros the final chunk but keeps the size.
  ASSERT_TRUE(f->content->PunchHole(60 * chunk(), 100 * chunk()).ok());
  std::fill(want.begin() + 60 * chunk(), want.end(), 0);
  back = vol_.ReadAll("f");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, want);
  EXPECT_TRUE(f->content->VerifyAll().ok());
}

TEST_P(ContentFileHolesTest, ZeroRangeKeepsOrExtendsTheSize) {
  auto f = vol_.Create("f");
  ASSERT_TRUE(f.ok());
  const Bytes data = Pattern(8 * chunk(), 5);
  ASSERT_TRUE(f->content->Write(0, data).ok());
  ASSERT_TRUE(f->content->ZeroRange(chunk() / 2, 5 * chunk(), /*keep_size=*/true).ok());
  Bytes want = data;
  std::fill(want.begin() + chunk() / 2, want.begin() + chunk() / 2 + 5 * chunk(), 0);
  EXPECT_EQ(*vol_.ReadAll("f"), want);
  // Past the end with KEEP_SIZE: the size stays.
  ASSERT_TRUE(f->content->ZeroRange(7 * chunk(), 10 * chunk(), true).ok());
  EXPECT_EQ(*f->content->Size(), 8 * chunk());
  std::fill(want.begin() + 7 * chunk(), want.end(), 0);
  EXPECT_EQ(*vol_.ReadAll("f"), want);
  // Without it: the file grows to the end of the range.
  ASSERT_TRUE(f->content->ZeroRange(7 * chunk(), 10 * chunk(), false).ok());
  EXPECT_EQ(*f->content->Size(), 17 * chunk());
  want.resize(17 * chunk(), 0);
  EXPECT_EQ(*vol_.ReadAll("f"), want);
}

TEST_P(ContentFileHolesTest, AllocateReservesAndOnlyModeZeroExtends) {
  auto f = vol_.Create("f");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(f->content->Write(0, Pattern(100, 6)).ok());
  ASSERT_TRUE(f->content->Allocate(0, 64 * chunk(), /*keep_size=*/true).ok());
  EXPECT_EQ(*f->content->Size(), 100u);
  EXPECT_GE(Allocated("f"), 64 * chunk());
  ASSERT_TRUE(f->content->Allocate(0, 32 * chunk(), /*keep_size=*/false).ok());
  EXPECT_EQ(*f->content->Size(), 32 * chunk());
  Bytes want(32 * chunk(), 0);
  std::copy_n(Pattern(100, 6).begin(), 100, want.begin());
  EXPECT_EQ(*vol_.ReadAll("f"), want);
  // Writes into reserved space land in place.
  ASSERT_TRUE(f->content->Write(10 * chunk(), Pattern(chunk(), 7)).ok());
  std::copy_n(Pattern(chunk(), 7).begin(), chunk(), want.begin() + 10 * chunk());
  EXPECT_EQ(*vol_.ReadAll("f"), want);
  EXPECT_EQ(f->content->Allocate(0, 0, false).sys_errno(), EINVAL);
}

TEST_P(ContentFileHolesTest, PastTheLargestSizeIsEfbig) {
  auto f = vol_.Create("f");
  ASSERT_TRUE(f.ok());
  const uint64_t max = vol_.layout().MaxPlaintextSize();
  EXPECT_EQ(f->content->Allocate(max, 1, false).sys_errno(), EFBIG);
  EXPECT_EQ(f->content->PunchHole(max - 1, 2).sys_errno(), EFBIG);
  EXPECT_EQ(f->content->ZeroRange(max, 1, true).sys_errno(), EFBIG);
  EXPECT_EQ(*f->content->Size(), 0u);
}

// A hole's neighbours keep their bytes whatever the alignment of chunks to
// backing blocks (the backing stride is C + 28, never block-aligned).
TEST_P(ContentFileHolesTest, SingleChunkHolesBetweenData) {
  auto f = vol_.Create("f");
  ASSERT_TRUE(f.ok());
  Bytes want;
  for (int i = 0; i < 40; ++i) {
    Bytes d = Pattern(chunk(), static_cast<uint8_t>(i));
    if (i % 2 == 1) std::fill(d.begin(), d.end(), 0);
    want.insert(want.end(), d.begin(), d.end());
  }
  ASSERT_TRUE(f->content->Write(0, want).ok());
  for (uint64_t i = 1; i < 40; i += 2) {
    ASSERT_TRUE(f->content->PunchHole(i * chunk(), chunk()).ok());
  }
  auto back = vol_.ReadAll("f");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, want);
  // Every hole chunk reads as zeros on disk, every data chunk opens.
  EXPECT_TRUE(f->content->VerifyAll().ok());
  for (uint64_t i = 0; i + 1 < 40; i += 2) {
    EXPECT_EQ(*f->content->SeekData(i * chunk()), i * chunk());
  }
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, ContentFileHolesTest,
    ::testing::Combine(::testing::Bool(), ::testing::Values(4096u, 65536u)),
    [](const auto& info) {
      return std::string(std::get<0>(info.param) ? "Xattr" : "Header") +
             std::to_string(std::get<1>(info.param));
    });

}  // namespace
}  // namespace envelope::format
