// fs::FsckVolume over FakeKeyService: what it counts and what it calls
// damage. Through the real daemon: tests/integration/rotate_test.py (FsckTest).
#include "fs/fsck.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>

#include "tests/unit/volume_fixture.h"

namespace envelope::fs {
namespace {

using testing::VolumeFixture;

class FsckTest : public ::testing::TestWithParam<bool> {
 protected:
  VolumeFixture fx_{/*labelled=*/GetParam()};
};

TEST_P(FsckTest, ACleanVolumeIsCleanAndItsKeyVersionsAreCounted) {
  auto volume = fx_.Open();
  ASSERT_TRUE(volume.ok());
  for (const char* name : {"f0", "f1", "f2"}) ASSERT_TRUE(fx_.WriteFile(**volume, name, "abc").ok());
  FsckOptions options;
  options.deep = true;
  auto report = FsckVolume(volume->get(), options);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_TRUE(report->clean());
  EXPECT_EQ(report->files, 3u);
  EXPECT_EQ(report->bytes, 9u);
  EXPECT_EQ(report->chunks_verified, 3u);
  // Labelled blobs say their key version; opaque ones cannot.
  uint64_t counted = 0;
  for (const auto& [version, n] : report->key_versions) counted += n;
  EXPECT_EQ(counted, GetParam() ? 3u : 0u);
}

TEST_P(FsckTest, AFlippedChunkByteAndADisabledKeyAreDamage) {
  auto volume = fx_.Open();
  ASSERT_TRUE(volume.ok());
  ASSERT_TRUE(fx_.WriteFile(**volume, "good", std::string(10000, 'g')).ok());
  ASSERT_TRUE(fx_.WriteFile(**volume, "bad", std::string(10000, 'b')).ok());
  // Flip a byte inside the first chunk of one backing file: the biggest
  // files are the two content files, and only one of them is changed.
  std::string victim;
  for (const auto& e : std::filesystem::directory_iterator(fx_.cipherdir() + "/cipher")) {
    if (e.is_regular_file() && e.file_size() > 10000) victim = e.path();
  }
  ASSERT_FALSE(victim.empty());
  {
    int fd = ::open(victim.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    uint8_t byte;
    ASSERT_EQ(::pread(fd, &byte, 1, 2000), 1);
    byte ^= 0x40;
    ASSERT_EQ(::pwrite(fd, &byte, 1, 2000), 1);
    ::close(fd);
  }
  FsckOptions deep;
  deep.deep = true;
  auto fresh = fx_.Open();
  ASSERT_TRUE(fresh.ok());
  auto report = FsckVolume(fresh->get(), deep);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  ASSERT_EQ(report->damaged.size(), 1u);

  // A disabled master key: after the volume is open, every file whose key
  // is not cached is reported, not silently skipped.
  auto before_disable = fx_.Open();
  ASSERT_TRUE(before_disable.ok());
  fx_.kms().SetKeyState(fx_.key(), "Disabled");
  auto disabled = FsckVolume(before_disable->get(), FsckOptions{});
  ASSERT_TRUE(disabled.ok()) << disabled.status().ToString();
  EXPECT_EQ(disabled->damaged.size(), 2u);
}

TEST_P(FsckTest, AServiceThatStopsAnsweringStopsTheCheck) {
  auto volume = fx_.Open();
  ASSERT_TRUE(volume.ok());
  ASSERT_TRUE(fx_.WriteFile(**volume, "a", "x").ok());
  auto fresh = fx_.Open();
  ASSERT_TRUE(fresh.ok());
  fx_.kms().FailAfter(0);
  auto report = FsckVolume(fresh->get(), FsckOptions{});
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), StatusCode::kUnavailable);
}

INSTANTIATE_TEST_SUITE_P(Blobs, FsckTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "Labelled" : "Opaque"; });

}  // namespace
}  // namespace envelope::fs
