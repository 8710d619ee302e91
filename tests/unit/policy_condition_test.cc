// Key-policy conditions: each operator and key, absent keys, batches of
// contexts for Allow and Deny, and refusal of what is not supported.
#include "keyservice/policy_condition.h"

#include <gtest/gtest.h>

#include "keyservice/key_policy.h"

namespace envelope::keyservice {
namespace {

using json = nlohmann::json;

PolicyCondition Cond(const char* text) {
  auto c = PolicyCondition::Parse(json::parse(text));
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? *c : PolicyCondition();
}

RequestFacts With(const std::vector<EncryptionContext>& contexts) {
  RequestFacts f;
  f.contexts = contexts;
  f.caller_account = "000000000000";
  return f;
}

TEST(PolicyConditionTest, EncryptionContextValues) {
  auto c = Cond(R"({"StringEquals": {"kms:EncryptionContext:Volume": ["v1", "v2"]}})");
  std::vector<EncryptionContext> v1 = {{{"volume", "v1"}}};
  std::vector<EncryptionContext> v3 = {{{"volume", "v3"}}};
  std::vector<EncryptionContext> none = {{}};
  EXPECT_TRUE(c.Holds(With(v1), false));
  EXPECT_FALSE(c.Holds(With(v3), false));
  EXPECT_FALSE(c.Holds(With(none), false));  // absent: no match
  EXPECT_FALSE(c.Holds(With({}), false));    // no context at all
  std::vector<EncryptionContext> upper = {{{"volume", "V1"}}};
  EXPECT_FALSE(c.Holds(With(upper), false));  // values are case sensitive

  auto ne = Cond(R"({"StringNotEquals": {"kms:EncryptionContext:volume": "v1"}})");
  EXPECT_FALSE(ne.Holds(With(v1), false));
  EXPECT_TRUE(ne.Holds(With(v3), false));
  EXPECT_TRUE(ne.Holds(With(none), false));  // absent: a negated operator holds

  auto like = Cond(R"({"StringLike": {"kms:EncryptionContext:path": "/home/alice/*"}})");
  std::vector<EncryptionContext> mine = {{{"path", "/home/alice/a.txt"}}};
  std::vector<EncryptionContext> theirs = {{{"path", "/home/bob/a.txt"}}};
  EXPECT_TRUE(like.Holds(With(mine), false));
  EXPECT_FALSE(like.Holds(With(theirs), false));
}

TEST(PolicyConditionTest, AmbiguousContextFailsClosedForEitherEffect) {
  auto c = Cond(R"({"StringEquals": {"kms:EncryptionContext:volume": "v1"}})");
  std::vector<EncryptionContext> twice = {{{"volume", "v1"}, {"VOLUME", "v2"}}};
  EXPECT_FALSE(c.Holds(With(twice), /*deny=*/false));
  EXPECT_TRUE(c.Holds(With(twice), /*deny=*/true));
}

TEST(PolicyConditionTest, BatchesNeedEveryContextToAllowAndAnyToDeny) {
  auto c = Cond(R"({"StringEquals": {"kms:EncryptionContext:volume": "v1"}})");
  std::vector<EncryptionContext> mixed = {{{"volume", "v1"}}, {{"volume", "v2"}}};
  EXPECT_FALSE(c.Holds(With(mixed), false));
  EXPECT_TRUE(c.Holds(With(mixed), true));
}

TEST(PolicyConditionTest, ContextKeysAsASet) {
  auto any = Cond(R"({"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "volume"}})");
  auto all = Cond(R"({"ForAllValues:StringLike": {"kms:EncryptionContextKeys": ["volume", "file"]}})");
  std::vector<EncryptionContext> both = {{{"volume", "v"}, {"file", "f"}}};
  std::vector<EncryptionContext> extra = {{{"volume", "v"}, {"user", "u"}}};
  std::vector<EncryptionContext> empty = {{}};
  EXPECT_TRUE(any.Holds(With(both), false));
  EXPECT_TRUE(any.Holds(With(extra), false));
  EXPECT_FALSE(any.Holds(With(empty), false));
  EXPECT_TRUE(all.Holds(With(both), false));
  EXPECT_FALSE(all.Holds(With(extra), false));
  EXPECT_TRUE(all.Holds(With(empty), false));  // every one of no keys
}

TEST(PolicyConditionTest, AccountAliasBoolAndNumbers) {
  RequestFacts f = With({});
  EXPECT_TRUE(Cond(R"({"StringEquals": {"kms:CallerAccount": "000000000000"}})").Holds(f, false));
  EXPECT_FALSE(Cond(R"({"StringEquals": {"kms:CallerAccount": "1"}})").Holds(f, false));
  auto alias = Cond(R"({"StringLike": {"kms:RequestAlias": "alias/app-*"}})");
  EXPECT_FALSE(alias.Holds(f, false));
  f.request_alias = "alias/app-web";
  EXPECT_TRUE(alias.Holds(f, false));
  EXPECT_FALSE(Cond(R"({"Bool": {"kms:GrantIsForAWSResource": true}})").Holds(f, false));
  EXPECT_TRUE(Cond(R"({"Bool": {"kms:GrantIsForAWSResource": "false"}})").Holds(f, false));
  auto window =
      Cond(R"({"NumericLessThanEquals": {"kms:ScheduleKeyDeletionPendingWindowInDays": 10}})");
  EXPECT_FALSE(window.Holds(f, false));  // absent
  f.pending_window_days = 7;
  EXPECT_TRUE(window.Holds(f, false));
  f.pending_window_days = 30;
  EXPECT_FALSE(window.Holds(f, false));
}

TEST(PolicyConditionTest, WhatIsNotSupportedIsRefusedByName) {
  for (const char* text : {
           R"({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})",
           R"({"StringEqualsIfExists": {"kms:CallerAccount": "1"}})",
           R"({"StringEquals": {"aws:PrincipalTag/team": "x"}})",
           R"({"StringEquals": {"kms:ViaService": "s3.amazonaws.com"}})",
           R"({"Bool": {"kms:CallerAccount": true}})",
           R"({"StringEquals": {"kms:RotationPeriodInDays": "90"}})",
           R"({"ForAnyValue:StringEquals": {"kms:CallerAccount": "1"}})",
           R"({"StringEquals": {}})", R"({})", R"([])",
           R"({"NumericLessThanEquals": {"kms:RotationPeriodInDays": "soon"}})"}) {
    auto c = PolicyCondition::Parse(json::parse(text));
    EXPECT_FALSE(c.ok()) << text;
  }
  auto c = PolicyCondition::Parse(json::parse(R"({"IpAddress": {"aws:SourceIp": "1.2.3.4"}})"));
  EXPECT_NE(c.status().message().find("IpAddress"), std::string::npos);
  c = PolicyCondition::Parse(json::parse(R"({"StringEquals": {"kms:ViaService": "x"}})"));
  EXPECT_NE(c.status().message().find("kms:ViaService"), std::string::npos);
}

TEST(PolicyConditionTest, InAPolicyAConditionGatesItsStatement) {
  auto policy = KeyPolicy::Parse(R"({"Statement": [
      {"Effect": "Allow", "Principal": {"Local": "user:bob"}, "Action": "kms:Decrypt",
       "Resource": "*", "Condition": {"StringEquals": {"kms:EncryptionContext:volume": "v1"}}},
      {"Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*",
       "Condition": {"StringEquals": {"kms:EncryptionContext:secret": "yes"}}}]})");
  ASSERT_TRUE(policy.ok()) << policy.status().ToString();
  Principal bob;
  bob.user_name = "bob";
  bob.uid = 1001;
  std::vector<EncryptionContext> v1 = {{{"volume", "v1"}}};
  std::vector<EncryptionContext> v2 = {{{"volume", "v2"}}};
  std::vector<EncryptionContext> secret = {{{"volume", "v1"}, {"secret", "yes"}}};
  EXPECT_EQ(policy->Evaluate(bob, "kms:Decrypt", "arn", With(v1)), KeyPolicy::Decision::kAllow);
  EXPECT_EQ(policy->Evaluate(bob, "kms:Decrypt", "arn", With(v2)),
            KeyPolicy::Decision::kImplicitDeny);
  EXPECT_EQ(policy->Evaluate(bob, "kms:Decrypt", "arn", With(secret)),
            KeyPolicy::Decision::kExplicitDeny);
}

}  // namespace
}  // namespace envelope::keyservice
