#include "keyservice/audit_anchor.h"

#include <gtest/gtest.h>

#include <fstream>
#include <vector>

#include "tests/unit/test_files.h"

namespace envelope::keyservice {
namespace {

class AuditAnchorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::move(*crypto::SecretBytes::Random(32));
    auto store = KeyStore::Open(dir_.path());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    ASSERT_TRUE(store_->Unlock(root_).ok());
    path_ = dir_.File("audit.log");
    log_ = OpenLog();
    for (int i = 0; i < 30; ++i) ASSERT_TRUE(log_->Append({{"operation", "Decrypt"}}).ok());
  }
  std::unique_ptr<AuditLog> OpenLog() {
    auto log = AuditLog::Open(path_, root_, nullptr);
    EXPECT_TRUE(log.ok()) << log.status().ToString();
    return std::move(*log);
  }
  // What an attacker does while the daemon is stopped.
  void CutLastLines(size_t n) {
    log_.reset();
    std::vector<std::string> lines;
    {
      std::ifstream in(path_);
      for (std::string l; std::getline(in, l);) lines.push_back(l);
    }
    lines.resize(lines.size() - n);
    std::ofstream out(path_, std::ios::trunc);
    for (const auto& l : lines) out << l << "\n";
  }

  testing::TempDir dir_;
  crypto::SecretBytes root_;
  std::unique_ptr<KeyStore> store_;
  std::string path_;
  std::unique_ptr<AuditLog> log_;
};

TEST(AuditAnchorFormatTest, RoundTripsAndReadsTheOlderForm) {
  AuditHead h{42, std::string(64, 'a'), 9000};
  auto parsed = ParseAuditAnchor(FormatAuditAnchor(h));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->seq, 42u);
  EXPECT_EQ(parsed->mac_hex, h.mac_hex);
  EXPECT_EQ(parsed->end_offset, 9000u);
  auto older = ParseAuditAnchor("42 " + std::string(64, 'b'));
  ASSERT_TRUE(older);
  EXPECT_EQ(older->end_offset, 0u);
  EXPECT_FALSE(ParseAuditAnchor("x " + std::string(64, 'b')));
  EXPECT_FALSE(ParseAuditAnchor("42 abc 1"));
  EXPECT_FALSE(ParseAuditAnchor("42 " + std::string(64, 'b') + " 1 extra"));
}

TEST_F(AuditAnchorTest, MalformedStoredAnchorRefusesStartWithAClearError) {
  for (const std::string& bad :
       {std::string("garbage"), std::string("99999999999999999999999 ") + std::string(64, 'b'),
        std::string("-1 ") + std::string(64, 'b') + " 0", std::string("12 ") +
        std::string(64, 'b') + " 0x10", std::string("")}) {
    ASSERT_TRUE(store_->PutMeta("audit-head", bad).ok());
    for (bool accept : {false, true}) {
      std::string accepted;
      Status s = CheckAuditAnchorAtStart(store_.get(), log_.get(), accept, &accepted);
      EXPECT_EQ(s.code(), StatusCode::kCorruption) << bad << ": " << s.ToString();
      EXPECT_NE(s.message().find("audit anchor saved in the store"), std::string::npos)
          << s.ToString();
      EXPECT_NE(s.message().find("is malformed"), std::string::npos) << s.ToString();
      EXPECT_TRUE(accepted.empty());
    }
    // Nor does the running daemon overwrite it.
    EXPECT_EQ(SaveAuditAnchor(store_.get(), log_.get()).code(), StatusCode::kCorruption);
  }
}

TEST_F(AuditAnchorTest, IntactLogStarts) {
  ASSERT_TRUE(SaveAuditAnchor(store_.get(), log_.get()).ok());
  log_ = OpenLog();
  std::string accepted;
  EXPECT_TRUE(CheckAuditAnchorAtStart(store_.get(), log_.get(), false, &accepted).ok());
  EXPECT_TRUE(accepted.empty());
}

// The finding: the last 20 lines dropped while the daemon is stopped went
// unnoticed, and the next tick overwrote the anchor with the shorter head.
TEST_F(AuditAnchorTest, TailCutWhileStoppedRefusesStartAndTheAnchorStays) {
  ASSERT_TRUE(SaveAuditAnchor(store_.get(), log_.get()).ok());
  CutLastLines(20);
  log_ = OpenLog();
  std::string accepted;
  Status s = CheckAuditAnchorAtStart(store_.get(), log_.get(), false, &accepted);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("20 records were cut"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("--audit-accept-truncation"), std::string::npos);
  // A save (the scheduler tick) must not move the anchor back to line 10.
  Status save = SaveAuditAnchor(store_.get(), log_.get());
  EXPECT_FALSE(save.ok());
  auto anchor = LoadAuditAnchor(store_.get());
  ASSERT_TRUE(anchor.ok() && anchor->has_value());
  EXPECT_EQ((*anchor)->seq, 30u);
}

TEST_F(AuditAnchorTest, AcceptedTruncationIsRecordedAndReanchored) {
  ASSERT_TRUE(SaveAuditAnchor(store_.get(), log_.get()).ok());
  CutLastLines(20);
  log_ = OpenLog();
  std::string accepted;
  Status s = CheckAuditAnchorAtStart(store_.get(), log_.get(), true, &accepted);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_NE(accepted.find("20 records were cut"), std::string::npos) << accepted;
  EXPECT_EQ(log_->head().seq, 11u);
  auto anchor = LoadAuditAnchor(store_.get());
  ASSERT_TRUE(anchor.ok() && anchor->has_value());
  EXPECT_EQ((*anchor)->seq, 11u);
  auto r = log_->Verify({log_->head(), **anchor});
  EXPECT_TRUE(r.ok) << r.reason;
  ASSERT_EQ(r.notes.size(), 1u);
  EXPECT_NE(r.notes[0].find("records 11 to 30 were lost"), std::string::npos) << r.notes[0];
  // From here on it starts normally.
  log_ = OpenLog();
  EXPECT_TRUE(CheckAuditAnchorAtStart(store_.get(), log_.get(), false, &accepted).ok());
}

TEST_F(AuditAnchorTest, AnchorMovesOnlyForward) {
  ASSERT_TRUE(SaveAuditAnchor(store_.get(), log_.get()).ok());
  ASSERT_TRUE(log_->Append({{"operation", "Encrypt"}}).ok());
  ASSERT_TRUE(SaveAuditAnchor(store_.get(), log_.get()).ok());
  auto anchor = LoadAuditAnchor(store_.get());
  ASSERT_TRUE(anchor.ok() && anchor->has_value());
  EXPECT_EQ((*anchor)->seq, 31u);
  EXPECT_EQ((*anchor)->end_offset, log_->head().end_offset);
}

// An anchor saved by an older daemon has no offset: start-up checks it by
// reading the whole log.
TEST_F(AuditAnchorTest, OlderAnchorWithoutOffsetIsStillChecked) {
  AuditHead h = log_->head();
  ASSERT_TRUE(store_->PutMeta("audit-head", std::to_string(h.seq) + " " + h.mac_hex).ok());
  CutLastLines(20);
  log_ = OpenLog();
  std::string accepted;
  EXPECT_FALSE(CheckAuditAnchorAtStart(store_.get(), log_.get(), false, &accepted).ok());
}

}  // namespace
}  // namespace envelope::keyservice
