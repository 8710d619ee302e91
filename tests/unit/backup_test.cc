// The backup file and its shares (keyservice/backup.h): what opens it, and
// everything that must not.
#include "keyservice/backup.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/crypto/hash.h"

namespace envelope::keyservice {
namespace {

class BackupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::move(*crypto::SecretBytes::Random(32));
    store_ = Bytes(5000, 0x5a);
    auto sealed = SealBackup(root_, store_, 3, 5, 1796558223, 7);
    ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
    file_ = sealed->file;
    shares_ = sealed->shares;
    header_ = *ReadBackupHeader(file_);
  }
  std::vector<crypto::ShamirShare> Parsed(std::vector<int> which) {
    std::vector<crypto::ShamirShare> out;
    for (int i : which) out.push_back(std::move(*ParseShare(shares_[i], header_)));
    return out;
  }

  crypto::SecretBytes root_;
  Bytes store_;
  Bytes file_;
  std::vector<std::string> shares_;
  BackupHeader header_;
};

TEST_F(BackupTest, AnyThreeSharesOpenIt) {
  EXPECT_EQ(header_.threshold, 3u);
  EXPECT_EQ(header_.shares, 5u);
  EXPECT_EQ(header_.keys, 7u);
  EXPECT_EQ(header_.created, 1796558223);
  EXPECT_EQ(header_.backup_id.size(), 8u);
  ASSERT_EQ(shares_.size(), 5u);
  for (std::vector<int> pick : {std::vector<int>{0, 1, 2}, {4, 2, 0}, {1, 3, 4}}) {
    auto got = OpenBackup(file_, Parsed(pick));
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_TRUE(crypto::ConstantTimeEquals(got->root_key.view(), root_.view()));
    EXPECT_TRUE(got->root_key.in_secure_heap());
    EXPECT_EQ(got->store, store_);
  }
  // A share as typed, with spaces and a newline around it.
  EXPECT_TRUE(ParseShare("  " + shares_[0] + "\r\n", header_).ok());
}

TEST_F(BackupTest, FewerSharesAreRefused) {
  auto got = OpenBackup(file_, Parsed({0, 3}));
  EXPECT_EQ(got.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(got.status().message().find("needs 3 shares; 2 given"), std::string::npos);
}

TEST_F(BackupTest, MistypedAndForeignSharesAreRefusedByName) {
  std::string typo = shares_[1];
  typo[40] = typo[40] == 'a' ? 'b' : 'a';
  auto bad = ParseShare(typo, header_);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("check digits"), std::string::npos);
  EXPECT_FALSE(ParseShare("hello", header_).ok());
  // A share of another backup (of the same store, in the same second)
  // names that backup.
  auto other = SealBackup(root_, store_, 3, 5, 1796558223, 7);
  ASSERT_TRUE(other.ok());
  auto foreign = ParseShare(other->shares[0], header_);
  EXPECT_EQ(foreign.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(foreign.status().message().find(other->header.backup_id), std::string::npos);
}

TEST_F(BackupTest, SharesThatDoNotOpenItAreRefused) {
  // Three well-formed shares, one of which is of another split (parsed
  // against its own backup's header): combining gives another key, and
  // the backup does not open.
  auto other = SealBackup(root_, store_, 3, 5, 1796558223, 7);
  ASSERT_TRUE(other.ok());
  BackupHeader their = *ReadBackupHeader(other->file);
  EXPECT_NE(their.backup_id, header_.backup_id);
  std::vector<crypto::ShamirShare> mixed = Parsed({0, 1});
  mixed.push_back(std::move(*ParseShare(other->shares[2], their)));
  EXPECT_EQ(OpenBackup(file_, mixed).status().code(), StatusCode::kPermissionDenied);
}

TEST_F(BackupTest, AlteredFilesAreRefused) {
  // The header: its id no longer matches.
  Bytes header_changed = file_;
  header_changed[20] ^= 1;
  EXPECT_EQ(ReadBackupHeader(header_changed).status().code(), StatusCode::kCorruption);
  // The sealed root key and the sealed store.
  for (size_t at : {file_.size() - 5000 - 40, file_.size() - 100, file_.size() - 1}) {
    Bytes changed = file_;
    changed[at] ^= 1;
    EXPECT_FALSE(OpenBackup(changed, Parsed({0, 1, 2})).ok()) << at;
  }
  // Cut short, or not a backup at all.
  EXPECT_EQ(ReadBackupHeader(ByteView(file_.data(), file_.size() - 1)).status().code(),
            StatusCode::kCorruption);
  EXPECT_EQ(ReadBackupHeader(AsBytes("not a backup")).status().code(), StatusCode::kCorruption);
}

}  // namespace
}  // namespace envelope::keyservice
