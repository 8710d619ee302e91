#include "fs/key_trust.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace envelope::fs {
namespace {

// An envelope-keyd blob label for key 00112233-...-eeff (docs/KEYSERVICE.md)
// followed by filler: KeyTrust reads only the label.
Bytes BlobUnder(uint8_t first_byte_of_key) {
  Bytes blob = {'E', 'K', 0x01};
  for (int i = 0; i < 16; ++i) blob.push_back(static_cast<uint8_t>(first_byte_of_key + i * 0x11));
  for (int i = 0; i < 4 + 12 + 32 + 16; ++i) blob.push_back(i == 0 ? 1 : 0);
  return blob;
}

TEST(KeyTrustTest, UnwrapsOnlyUnderATrustedKey) {
  KeyTrust trust;
  trust.Add({"arn:aws:kms:local:000000000000:key/00112233-4455-6677-8899-aabbccddeeff",
             "00112233-4455-6677-8899-aabbccddeeff"});
  auto ok = trust.KeyIdFor(BlobUnder(0x00), "fallback");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(*ok, "arn:aws:kms:local:000000000000:key/00112233-4455-6677-8899-aabbccddeeff");

  // A blob someone made under a key of their own is refused, not sent.
  auto other = trust.KeyIdFor(BlobUnder(0x01), "fallback");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), StatusCode::kCorruption);
  EXPECT_NE(other.status().message().find("does not trust"), std::string::npos);

  // A blob without an envelope-keyd label (AWS KMS) goes to the fallback.
  auto aws = trust.KeyIdFor(Bytes{1, 2, 3, 4}, "fallback");
  ASSERT_TRUE(aws.ok());
  EXPECT_EQ(*aws, "fallback");
}

class PrivatePathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/key-trust-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    file_ = dir_ + "/envelopefs.conf";
    std::ofstream(file_) << "{}";
    ASSERT_EQ(::chmod(file_.c_str(), 0400), 0);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_, file_;
};

TEST_F(PrivatePathTest, OwnedByCallerAndNotWritableByOthersPasses) {
  // /tmp is writable by all but sticky: accepted.
  EXPECT_TRUE(CheckPrivatePath(file_).ok()) << CheckPrivatePath(file_).ToString();
}

TEST_F(PrivatePathTest, WritableDirectoryFails) {
  ASSERT_EQ(::chmod(dir_.c_str(), 0777), 0);
  Status s = CheckPrivatePath(file_);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("writable by group or others"), std::string::npos) << s.ToString();
  ASSERT_EQ(::chmod(dir_.c_str(), 01777), 0);  // sticky: others cannot replace the file
  EXPECT_TRUE(CheckPrivatePath(file_).ok());
}

TEST_F(PrivatePathTest, WritableFileAndSymlinkFail) {
  ASSERT_EQ(::chmod(file_.c_str(), 0666), 0);
  EXPECT_EQ(CheckPrivatePath(file_).code(), StatusCode::kFailedPrecondition);
  const std::string link = dir_ + "/link.conf";
  ASSERT_EQ(::symlink(file_.c_str(), link.c_str()), 0);
  ASSERT_EQ(::chmod(file_.c_str(), 0400), 0);
  EXPECT_EQ(CheckPrivatePath(link).code(), StatusCode::kFailedPrecondition);
}

TEST_F(PrivatePathTest, OwnedByAnotherUserFails) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give the file away";
  ASSERT_EQ(::chown(file_.c_str(), 65534, 65534), 0);
  Status s = CheckPrivatePath(file_);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("owned by another user"), std::string::npos) << s.ToString();
}

}  // namespace
}  // namespace envelope::fs
