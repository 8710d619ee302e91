// The key ring's rules as methods of the key record: states, deletion and
// its cancelling, versions and their retirement.
#include "keyservice/key_record.h"

#include <gtest/gtest.h>

namespace envelope::keyservice {
namespace {

KeyRecord NewKey() {
  KeyRecord r;
  r.key_id = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";
  r.AddVersion(1000, "INITIAL");
  return r;
}

TEST(KeyRecordTest, EnableAndDisable) {
  KeyRecord r = NewKey();
  ASSERT_TRUE(r.SetEnabled(false).ok());
  EXPECT_EQ(r.key_state, kStateDisabled);
  EXPECT_FALSE(r.enabled_flag);
  ASSERT_TRUE(r.SetEnabled(true).ok());
  EXPECT_EQ(r.key_state, kStateEnabled);
  EXPECT_TRUE(r.enabled_flag);
}

TEST(KeyRecordTest, ScheduledDeletionRefusesChangesUntilCancelled) {
  KeyRecord r = NewKey();
  ASSERT_TRUE(r.ScheduleDeletion(7, 1000).ok());
  EXPECT_EQ(r.key_state, kStatePendingDeletion);
  EXPECT_EQ(r.deletion_date, 1000 + 7 * 86400);
  EXPECT_EQ(r.pending_window_days, 7);
  const KeyRecord before = r;
  EXPECT_EQ(r.ScheduleDeletion(30, 2000).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(r.SetEnabled(true).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(r.SetDescription("x").code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(r.ToJson(), before.ToJson());  // a refused change changes nothing
  // As AWS: a cancelled deletion leaves the key Disabled.
  ASSERT_TRUE(r.CancelDeletion().ok());
  EXPECT_EQ(r.key_state, kStateDisabled);
  EXPECT_FALSE(r.enabled_flag);
  EXPECT_EQ(r.deletion_date, 0);
  EXPECT_EQ(r.CancelDeletion().code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(r.SetDescription("kept").ok());
  EXPECT_EQ(r.description, "kept");
}

TEST(KeyRecordTest, VersionsCountUpAndRetireFromTheBottom) {
  KeyRecord r = NewKey();
  EXPECT_EQ(r.AddVersion(2000, "ON_DEMAND"), 2u);
  EXPECT_EQ(r.AddVersion(3000, "AUTOMATIC"), 3u);
  EXPECT_EQ(r.current_version, 3u);
  ASSERT_EQ(r.versions.size(), 3u);
  EXPECT_EQ(r.versions[2].rotation_type, "AUTOMATIC");
  EXPECT_EQ(r.retained_versions(), 3u);

  EXPECT_EQ(r.Retire(0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.Retire(4).status().code(), StatusCode::kInvalidArgument);  // past current
  auto retired = r.Retire(3);
  ASSERT_TRUE(retired.ok());
  EXPECT_EQ(*retired, (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(r.min_version, 3u);
  EXPECT_EQ(r.retained_versions(), 1u);
  // Retiring below what is already retired retires nothing, and never
  // brings a version back.
  retired = r.Retire(2);
  ASSERT_TRUE(retired.ok());
  EXPECT_TRUE(retired->empty());
  EXPECT_EQ(r.min_version, 3u);
  // The record round-trips through its stored form.
  auto back = KeyRecord::FromJson(r.ToJson());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->ToJson(), r.ToJson());
}

}  // namespace
}  // namespace envelope::keyservice
