#include "keyservice/audit_log.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/unit/test_files.h"

namespace envelope::keyservice {
namespace {

std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string l;
  while (std::getline(in, l)) lines.push_back(l);
  return lines;
}

void WriteLines(const std::string& path, const std::vector<std::string>& lines) {
  std::ofstream out(path, std::ios::trunc);
  for (const auto& l : lines) out << l << "\n";
}

class AuditLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::move(*crypto::SecretBytes::Random(32));
    path_ = dir_.File("audit.log");
    auto log = AuditLog::Open(path_, root_, nullptr);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    for (int i = 0; i < 10; ++i) {
      ASSERT_TRUE((*log)->Append({{"operation", "Decrypt"}, {"n", i}}).ok());
    }
    head_ = (*log)->head();
    mac_key_ = std::move(*AuditLog::DeriveMacKey(root_));
  }
  AuditVerifyResult Verify() { return AuditLog::VerifyFile(path_, mac_key_, head_); }

  testing::TempDir dir_;
  crypto::SecretBytes root_, mac_key_;
  std::string path_;
  AuditHead head_;
};

TEST_F(AuditLogTest, IntactLogVerifies) {
  auto r = Verify();
  EXPECT_TRUE(r.ok) << r.reason;
  EXPECT_EQ(r.lines, 10u);
  EXPECT_EQ(head_.seq, 10u);
}

TEST_F(AuditLogTest, EditedLineIsNamed) {
  auto lines = ReadLines(path_);
  auto pos = lines[4].find("Decrypt");
  lines[4].replace(pos, 7, "Encrypt");
  WriteLines(path_, lines);
  auto r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_line, 5u);
  EXPECT_NE(r.reason.find("MAC"), std::string::npos);
}

TEST_F(AuditLogTest, DeletedLineIsNamed) {
  auto lines = ReadLines(path_);
  lines.erase(lines.begin() + 6);
  WriteLines(path_, lines);
  auto r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_line, 7u);
}

TEST_F(AuditLogTest, InsertedLineIsNamed) {
  auto lines = ReadLines(path_);
  lines.insert(lines.begin() + 2, lines[1]);
  WriteLines(path_, lines);
  auto r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_line, 3u);
}

TEST_F(AuditLogTest, DeletedTailIsDetectedAgainstTheHead) {
  auto lines = ReadLines(path_);
  lines.pop_back();
  WriteLines(path_, lines);
  auto r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_line, 10u);
  EXPECT_NE(r.reason.find("deleted at the end"), std::string::npos);
}

TEST_F(AuditLogTest, ForgedChainWithoutTheKeyFails) {
  // Recomputing MACs needs the key derived from the root key; a rewrite with
  // any other key is caught on its first line.
  auto other = std::move(*crypto::SecretBytes::Random(32));
  std::string other_path = dir_.File("other.log");
  auto forged = AuditLog::Open(other_path, other, nullptr);
  ASSERT_TRUE(forged.ok());
  ASSERT_TRUE((*forged)->Append({{"operation", "Decrypt"}}).ok());
  auto r = AuditLog::VerifyFile(other_path, mac_key_, AuditHead{});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_line, 1u);
}

TEST_F(AuditLogTest, ReopenResumesTheChainAndCutsATornLine) {
  {
    std::ofstream out(path_, std::ios::app);
    out << R"({"seq":11,"time":"half a li)";  // the daemon died mid-write
  }
  std::string recovered;
  auto log = AuditLog::Open(path_, root_, &recovered);
  ASSERT_TRUE(log.ok());
  EXPECT_NE(recovered.find("torn"), std::string::npos);
  EXPECT_EQ((*log)->head().seq, 10u);
  ASSERT_TRUE((*log)->Append({{"operation", "Encrypt"}}).ok());
  auto r = AuditLog::VerifyFile(path_, mac_key_, (*log)->head());
  EXPECT_TRUE(r.ok) << r.reason;
  EXPECT_EQ(r.lines, 11u);
  auto tail = (*log)->Tail(2);
  ASSERT_EQ(tail.size(), 2u);
  EXPECT_NE(tail[1].find("\"seq\":11"), std::string::npos);
}

// The attack: stop the daemon, cut the last lines, start it again. The
// reopened log's own head is its (new) last line, so only the anchor saved
// before the cut can tell.
TEST_F(AuditLogTest, ContinuesFromFindsATailCutAfterTheAnchor) {
  AuditHead anchor = head_;
  EXPECT_EQ(anchor.end_offset, std::filesystem::file_size(path_));
  {
    auto log = AuditLog::Open(path_, root_, nullptr);
    ASSERT_TRUE(log.ok());
    auto r = (*log)->ContinuesFrom(anchor);
    EXPECT_TRUE(r.ok) << r.reason;
    ASSERT_TRUE((*log)->Append({{"operation", "Encrypt"}}).ok());
    r = (*log)->ContinuesFrom(anchor);  // later lines chained to it: fine
    EXPECT_TRUE(r.ok) << r.reason;
    EXPECT_EQ(r.lines, 11u);
  }
  auto lines = ReadLines(path_);
  lines.resize(7);
  WriteLines(path_, lines);
  auto log = AuditLog::Open(path_, root_, nullptr);
  ASSERT_TRUE(log.ok());
  auto r = (*log)->ContinuesFrom(anchor);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.reason.find("3 records were cut"), std::string::npos) << r.reason;
  // Verify against the anchor finds it as well.
  r = AuditLog::VerifyFile(path_, mac_key_, std::vector<AuditHead>{(*log)->head(), anchor});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_line, 8u);
}

// Cut the tail and let the daemon write as many new lines: the seq numbers
// reach the anchor again, but the anchored line's MAC is not there.
TEST_F(AuditLogTest, ContinuesFromFindsARewrittenTail) {
  AuditHead anchor = head_;
  auto lines = ReadLines(path_);
  lines.resize(5);
  WriteLines(path_, lines);
  auto log = AuditLog::Open(path_, root_, nullptr);
  ASSERT_TRUE(log.ok());
  for (int i = 0; i < 6; ++i) ASSERT_TRUE((*log)->Append({{"operation", "Encrypt"}}).ok());
  EXPECT_GE((*log)->head().seq, anchor.seq);
  auto r = (*log)->ContinuesFrom(anchor);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_line, 10u);
  r = AuditLog::VerifyFile(path_, mac_key_, std::vector<AuditHead>{anchor});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_line, 10u);
}

TEST_F(AuditLogTest, SyncReturnsTheHead) {
  auto log = AuditLog::Open(path_, root_, nullptr);
  ASSERT_TRUE(log.ok());
  auto head = (*log)->Sync();
  ASSERT_TRUE(head.ok()) << head.status().ToString();
  EXPECT_EQ(head->seq, head_.seq);
  EXPECT_EQ(head->mac_hex, head_.mac_hex);
  EXPECT_EQ(head->end_offset, head_.end_offset);
}

TEST_F(AuditLogTest, UnwritableLogFailsTheAppend) {
  // Fail closed: a log on a full or read-only filesystem makes Append fail.
  auto log = AuditLog::Open("/dev/full", root_, nullptr);
  ASSERT_TRUE(log.ok());
  Status s = (*log)->Append({{"operation", "Decrypt"}});
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(ToErrno(s), ENOSPC);
}

}  // namespace
}  // namespace envelope::keyservice
