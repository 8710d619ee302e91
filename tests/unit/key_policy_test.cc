#include "keyservice/key_policy.h"

#include <gtest/gtest.h>

namespace envelope::keyservice {
namespace {

constexpr char kArn[] = "arn:aws:kms:local:000000000000:key/1b4e28ba-2fa1-41d2-883f-0016d3cca427";

Principal User(const std::string& name, uid_t uid, std::vector<std::string> groups = {}) {
  Principal p;
  p.kind = Principal::Kind::kUnix;
  p.uid = uid;
  p.user_name = name;
  p.group_names = std::move(groups);
  return p;
}

Principal AccessKey(const std::string& name) {
  Principal p;
  p.kind = Principal::Kind::kAccessKey;
  p.access_key_id = "AKID";
  p.access_key_name = name;
  return p;
}

KeyPolicy Parse(const std::string& json) {
  auto p = KeyPolicy::Parse(json);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return *p;
}

TEST(KeyPolicyTest, DefaultPolicyAllowsCreatorAndRootOnly) {
  KeyPolicy p = Parse(KeyPolicy::DefaultFor(User("alice", 1000)));
  EXPECT_TRUE(p.Allows(User("alice", 1000), "kms:Decrypt", kArn));
  EXPECT_TRUE(p.Allows(User("root", 0), "kms:PutKeyPolicy", kArn));
  EXPECT_FALSE(p.Allows(User("bob", 1001), "kms:Decrypt", kArn));
  EXPECT_FALSE(p.Allows(User("nobody", 65534), "kms:DescribeKey", kArn));
  EXPECT_FALSE(p.Allows(AccessKey("alice"), "kms:Decrypt", kArn));
  KeyPolicy q = Parse(KeyPolicy::DefaultFor(AccessKey("ci")));
  EXPECT_TRUE(q.Allows(AccessKey("ci"), "kms:Encrypt", kArn));
  EXPECT_FALSE(q.Allows(AccessKey("other"), "kms:Encrypt", kArn));
}

TEST(KeyPolicyTest, ActionWildcardsAreCaseInsensitive) {
  KeyPolicy p = Parse(R"({"Statement":[{"Effect":"Allow","Principal":{"Local":"user:svc"},
    "Action":["kms:GenerateDataKey*","KMS:decrypt"],"Resource":"*"}]})");
  Principal svc = User("svc", 500);
  EXPECT_TRUE(p.Allows(svc, "kms:GenerateDataKey", kArn));
  EXPECT_TRUE(p.Allows(svc, "kms:GenerateDataKeyWithoutPlaintext", kArn));
  EXPECT_TRUE(p.Allows(svc, "kms:Decrypt", kArn));
  EXPECT_FALSE(p.Allows(svc, "kms:Encrypt", kArn));
  EXPECT_FALSE(p.Allows(svc, "kms:PutKeyPolicy", kArn));
}

TEST(KeyPolicyTest, DenyWins) {
  KeyPolicy p = Parse(R"({"Version":"2012-10-17","Statement":[
    {"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"},
    {"Effect":"Deny","Principal":{"AWS":["uid:1001"]},"Action":"kms:Decrypt","Resource":"*"}]})");
  EXPECT_TRUE(p.Allows(User("alice", 1000), "kms:Decrypt", kArn));
  EXPECT_EQ(p.Evaluate(User("bob", 1001), "kms:Decrypt", kArn),
            KeyPolicy::Decision::kExplicitDeny);
  EXPECT_TRUE(p.Allows(User("bob", 1001), "kms:Encrypt", kArn));
}

TEST(KeyPolicyTest, GroupsAndResources) {
  KeyPolicy p = Parse(R"({"Statement":{"Effect":"Allow","Principal":{"Local":["group:ops"]},
    "Action":"kms:Describe*","Resource":"arn:aws:kms:local:000000000000:key/1b4e*"}})");
  EXPECT_TRUE(p.Allows(User("carol", 1002, {"ops"}), "kms:DescribeKey", kArn));
  EXPECT_FALSE(p.Allows(User("carol", 1002, {"dev"}), "kms:DescribeKey", kArn));
  EXPECT_FALSE(p.Allows(User("carol", 1002, {"ops"}), "kms:DescribeKey",
                        "arn:aws:kms:local:000000000000:key/2222"));
}

// One test per rejected element.
TEST(KeyPolicyTest, RejectsNonJson) { EXPECT_FALSE(KeyPolicy::Parse("{").ok()); }
TEST(KeyPolicyTest, RejectsMissingStatement) {
  EXPECT_FALSE(KeyPolicy::Parse(R"({"Version":"2012-10-17"})").ok());
}
TEST(KeyPolicyTest, RejectsBadEffect) {
  EXPECT_FALSE(KeyPolicy::Parse(R"({"Statement":{"Effect":"Maybe","Principal":"*","Action":"kms:*","Resource":"*"}})").ok());
}
TEST(KeyPolicyTest, RejectsEmptyCondition) {
  auto p = KeyPolicy::Parse(R"({"Statement":{"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*","Condition":{}}})");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("Condition"), std::string::npos);
}
TEST(KeyPolicyTest, RejectsNotAction) {
  EXPECT_FALSE(KeyPolicy::Parse(R"({"Statement":{"Effect":"Allow","Principal":"*","NotAction":"kms:Decrypt","Resource":"*"}})").ok());
}
TEST(KeyPolicyTest, RejectsUnknownPrincipalForm) {
  EXPECT_FALSE(KeyPolicy::Parse(R"({"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::1:root"},"Action":"kms:*","Resource":"*"}})").ok());
  EXPECT_FALSE(KeyPolicy::Parse(R"({"Statement":{"Effect":"Allow","Principal":{"Service":"x"},"Action":"kms:*","Resource":"*"}})").ok());
  EXPECT_FALSE(KeyPolicy::Parse(R"({"Statement":{"Effect":"Allow","Principal":{"Local":"uid:abc"},"Action":"kms:*","Resource":"*"}})").ok());
}
TEST(KeyPolicyTest, RejectsNonKmsAction) {
  EXPECT_FALSE(KeyPolicy::Parse(R"({"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"*"}})").ok());
}
TEST(KeyPolicyTest, RejectsMissingResource) {
  EXPECT_FALSE(KeyPolicy::Parse(R"({"Statement":{"Effect":"Allow","Principal":"*","Action":"kms:*"}})").ok());
}
TEST(KeyPolicyTest, RejectsUnknownTopLevelElement) {
  EXPECT_FALSE(KeyPolicy::Parse(R"({"Statement":{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"},"Extra":1})").ok());
}
TEST(KeyPolicyTest, RejectsOversizedPolicy) {
  std::string big = R"({"Id":")" + std::string(40000, 'x') +
                    R"(","Statement":{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}})";
  EXPECT_FALSE(KeyPolicy::Parse(big).ok());
}

TEST(WildcardTest, Matches) {
  EXPECT_TRUE(WildcardMatch("*", ""));
  EXPECT_TRUE(WildcardMatch("kms:gen*", "kms:generatedatakey"));
  EXPECT_TRUE(WildcardMatch("a?c", "abc"));
  EXPECT_FALSE(WildcardMatch("a?c", "ac"));
  EXPECT_TRUE(WildcardMatch("*x*y*", "axbyc"));
  EXPECT_FALSE(WildcardMatch("*x*y", "axbyc"));
}

}  // namespace
}  // namespace envelope::keyservice
