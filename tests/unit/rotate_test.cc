// fs::RotateVolume over FakeKeyService, with labelled blobs (envelope-keyd:
// the label says which blobs are current) and opaque ones (AWS KMS: the
// rotation journal does). Crash-safety through real kills:
// tests/integration/rotate_test.py (CrashTest).
#include "fs/rotate.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include <gtest/gtest.h>

#include "tests/unit/volume_fixture.h"

namespace envelope::fs {
namespace {

using testing::VolumeFixture;

constexpr int kFiles = 40;

class RotateTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    auto volume = fx_.Open();
    ASSERT_TRUE(volume.ok()) << volume.status().ToString();
    for (int i = 0; i < kFiles; ++i) {
      ASSERT_TRUE(fx_.WriteFile(**volume, Name(i), std::string("content of ").append(Name(i))).ok());
    }
  }

  static std::string Name(int i) {
    std::string name = "file";  // appended: GCC 12 warns falsely on "literal" + string
    name += std::to_string(i);
    return name;
  }

  StatusOr<RotateSummary> Rotate(const std::string& to_key = "",
                                 std::vector<std::string> pins = {},
                                 std::vector<std::string> also = {}) {
    ENVELOPE_ASSIGN_OR_RETURN(std::unique_ptr<Volume> volume, fx_.Open(pins, also));
    RotateOptions options;
    options.to_key = to_key;
    options.threads = 4;
    return RotateVolume(volume.get(), options);
  }

  // Every file reads back and its file key is under `version` of its key.
  void ExpectAllUnder(uint32_t version, std::vector<std::string> pins = {}) {
    auto volume = fx_.Open(pins);
    ASSERT_TRUE(volume.ok()) << volume.status().ToString();
    for (int i = 0; i < kFiles; ++i) {
      auto text = fx_.ReadFile(**volume, Name(i));
      ASSERT_TRUE(text.ok()) << Name(i) << ": " << text.status().ToString();
      EXPECT_EQ(*text, std::string("content of ").append(Name(i)));
      auto blob = fx_.WrappedDek(**volume, Name(i));
      ASSERT_TRUE(blob.ok());
      EXPECT_EQ(fx_.kms().VersionInBlob(*blob), version) << Name(i);
    }
  }

  VolumeFixture fx_{/*labelled=*/GetParam()};
};

TEST_P(RotateTest, RewrapsEveryFileOnceAndARerunDoesNothing) {
  fx_.kms().RotateKey(fx_.key());
  auto first = Rotate();
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->files, static_cast<uint64_t>(kFiles));
  EXPECT_EQ(first->rewrapped, static_cast<uint64_t>(kFiles));
  EXPECT_TRUE(first->failures.empty());
  EXPECT_TRUE(first->volume_key_rewrapped);
  ExpectAllUnder(2);

  const int64_t reencrypts = fx_.kms().Calls("ReEncrypt");
  auto second = Rotate();
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->rewrapped, 0u);
  EXPECT_EQ(second->already_current, static_cast<uint64_t>(kFiles));
  EXPECT_FALSE(second->volume_key_rewrapped);
  EXPECT_EQ(fx_.kms().Calls("ReEncrypt"), reencrypts);
}

TEST_P(RotateTest, ARunCutShortByTheServiceResumesWhereItStopped) {
  fx_.kms().RotateKey(fx_.key());
  // The service dies after some of the files.
  fx_.kms().FailAfter(/*DescribeKey, DescribeCurrentVersion, volume key, Decrypt*/ 4 + 15);
  auto cut = Rotate();
  ASSERT_FALSE(cut.ok());
  EXPECT_EQ(cut.status().code(), StatusCode::kUnavailable);
  fx_.kms().Restore();

  auto resumed = Rotate();
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  EXPECT_GT(resumed->already_current, 0u);
  EXPECT_LT(resumed->rewrapped, static_cast<uint64_t>(kFiles));
  EXPECT_EQ(resumed->rewrapped + resumed->already_current, static_cast<uint64_t>(kFiles));
  if (!GetParam()) {
    EXPECT_GT(resumed->journal_resumed, 0u);
  }
  ExpectAllUnder(2);
}

TEST_P(RotateTest, ANewKeyVersionStartsANewRotation) {
  fx_.kms().RotateKey(fx_.key());
  ASSERT_TRUE(Rotate().ok());
  fx_.kms().RotateKey(fx_.key());
  auto again = Rotate();
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->rewrapped, static_cast<uint64_t>(kFiles));
  EXPECT_EQ(again->journal_resumed, 0u);
  ExpectAllUnder(3);
}

TEST_P(RotateTest, ToKeyMovesTheVolumeAndTheOldKeyCanGo) {
  const std::string second = fx_.kms().CreateKey("second");
  auto moved = Rotate(second, {fx_.key()}, {second});
  ASSERT_TRUE(moved.ok()) << moved.status().ToString();
  EXPECT_EQ(moved->rewrapped, static_cast<uint64_t>(kFiles));
  EXPECT_EQ(moved->key_arn, second);
  fx_.kms().SetKeyState(fx_.key(), "Disabled");
  // Pinned to the new key alone, everything opens.
  ExpectAllUnder(1, {second});
}

TEST_P(RotateTest, WithoutVersionInformationEveryRunRewrapsEverything) {
  if (GetParam()) GTEST_SKIP() << "labels answer without ListKeyRotations";
  fx_.kms().SetVersionsVisible(false);
  fx_.kms().RotateKey(fx_.key());
  auto first = Rotate();
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->version_marker, "");
  EXPECT_EQ(first->rewrapped, static_cast<uint64_t>(kFiles));
  // Nothing can be known to be current: a rerun does it all again (and is
  // still correct).
  auto second = Rotate();
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->rewrapped, static_cast<uint64_t>(kFiles));
  ExpectAllUnder(2);
}

TEST_P(RotateTest, ADisabledTargetIsRefusedBeforeAnythingIsWritten) {
  const std::string second = fx_.kms().CreateKey("second");
  fx_.kms().SetKeyState(second, "Disabled");
  auto refused = Rotate(second, {fx_.key()}, {second});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(fx_.kms().Calls("ReEncrypt"), 0);
  ExpectAllUnder(1);
}

TEST_P(RotateTest, ReWrapsManyFilesAtATime) {
  fx_.kms().RotateKey(fx_.key());
  auto rotated = Rotate();
  ASSERT_TRUE(rotated.ok()) << rotated.status().ToString();
  EXPECT_EQ(rotated->rewrapped, static_cast<uint64_t>(kFiles));
  // Fewer than a batch of files: one ReEncryptMany for all of them (the
  // volume key has a ReEncrypt of its own).
  EXPECT_EQ(fx_.kms().Calls("ReEncryptMany"), 1);
  EXPECT_EQ(fx_.kms().Calls("ReEncrypt"), kFiles + 1);
  ExpectAllUnder(2);
}

// A file the service will not re-wrap fails alone, named by its plaintext
// path (the walk decrypts no names; a failure's is decrypted on demand),
// and so does a file whose header is damaged; every other file of the
// batch is re-wrapped.
TEST_P(RotateTest, AFileThatFailsFailsAloneUnderItsPlaintextName) {
  {
    auto volume = fx_.Open();
    ASSERT_TRUE(volume.ok());
    auto other = fx_.WrappedDek(**volume, Name(1));
    ASSERT_TRUE(other.ok());
    // file2 now carries file1's key blob, bound to file1's context.
    ASSERT_TRUE(fx_.ReplaceWrappedDek(**volume, Name(2), *other).ok());
    ASSERT_TRUE(fx_.DamageHeader(**volume, Name(3)).ok());
  }
  fx_.kms().RotateKey(fx_.key());
  auto rotated = Rotate();
  ASSERT_TRUE(rotated.ok()) << rotated.status().ToString();
  EXPECT_EQ(rotated->rewrapped, static_cast<uint64_t>(kFiles - 2));
  ASSERT_EQ(rotated->failures.size(), 2u);
  EXPECT_EQ(rotated->failures[0].rfind("/file", 0), 0u) << rotated->failures[0];
  std::vector<std::string> named;
  for (const std::string& f : rotated->failures) named.push_back(f.substr(0, f.find(':')));
  std::sort(named.begin(), named.end());
  EXPECT_EQ(named, (std::vector<std::string>{"/file2", "/file3"}));
  for (const std::string& f : rotated->failures) {
    if (f.rfind("/file2:", 0) == 0) {
      EXPECT_NE(f.find("InvalidCiphertextException"), std::string::npos) << f;
    }
  }
}

// The marker of a run in progress: gone after a run that finished, and a
// run that finds one (an earlier run was killed) says so and syncs first.
TEST_P(RotateTest, AnInterruptedRunIsNoticedByTheNextOne) {
  const std::string marker = fx_.cipherdir() + "/cipher/.envelopefs.rotating";
  struct stat st;
  fx_.kms().RotateKey(fx_.key());
  auto first = Rotate();
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_NE(::stat(marker.c_str(), &st), 0) << "a finished run leaves no marker";
  for (const std::string& n : first->notes) EXPECT_EQ(n.find("interrupted"), std::string::npos) << n;

  const int fd = ::open(marker.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);  // as a killed run leaves it
  ::close(fd);
  fx_.kms().RotateKey(fx_.key());
  auto second = Rotate();
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->rewrapped, static_cast<uint64_t>(kFiles));
  bool noted = false;
  for (const std::string& n : second->notes) noted |= n.find("interrupted") != std::string::npos;
  EXPECT_TRUE(noted);
  EXPECT_NE(::stat(marker.c_str(), &st), 0);
  ExpectAllUnder(3);
}

INSTANTIATE_TEST_SUITE_P(Blobs, RotateTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "Labelled" : "Opaque"; });

}  // namespace
}  // namespace envelope::fs
