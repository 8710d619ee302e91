// Grants: what one allows, constraints (keys case-insensitive, values
// exact), the strictness rule for grants made through grants, validation,
// tokens, the stored form, and the key record's limits.
#include "keyservice/grant.h"

#include <gtest/gtest.h>

#include "keyservice/key_record.h"

namespace envelope::keyservice {
namespace {

const std::vector<std::string> kBob = {"user:bob", "uid:1001", "group:staff", "gid:50"};

Grant DecryptFor(std::string grantee) {
  Grant g;
  g.grant_id = std::string(64, 'a');
  g.grantee = std::move(grantee);
  g.operations = {"Decrypt"};
  return g;
}

TEST(GrantTest, AllowsItsGranteeItsOperationsOnly) {
  Grant g = DecryptFor("user:bob");
  g.operations = {"Decrypt", "DescribeKey"};
  ASSERT_TRUE(ValidateGrant(&g).ok());
  EXPECT_TRUE(g.Allows(kBob, "Decrypt", std::vector<EncryptionContext>{{}}, 100));
  EXPECT_TRUE(g.Allows(kBob, "DescribeKey", {}, 100));
  EXPECT_FALSE(g.Allows(kBob, "Encrypt", std::vector<EncryptionContext>{{}}, 100));
  const std::vector<std::string> alice = {"user:alice", "uid:1000"};
  EXPECT_FALSE(g.Allows(alice, "Decrypt", std::vector<EncryptionContext>{{}}, 100));
  // A group grantee: every member.
  Grant staff = DecryptFor("group:staff");
  EXPECT_TRUE(staff.Allows(kBob, "Decrypt", std::vector<EncryptionContext>{{}}, 100));
}

TEST(GrantTest, ExpiryEndsIt) {
  Grant g = DecryptFor("user:bob");
  g.expiry = 200;
  const std::vector<EncryptionContext> ctx{{}};
  EXPECT_TRUE(g.Allows(kBob, "Decrypt", ctx, 199));
  EXPECT_FALSE(g.Allows(kBob, "Decrypt", ctx, 200));
}

TEST(GrantTest, EqualsConstraintKeysIgnoreCaseValuesDoNot) {
  Grant g = DecryptFor("user:bob");
  g.context_equals = EncryptionContext{{"Path", "/a/b"}};
  ASSERT_TRUE(ValidateGrant(&g).ok());
  auto allows = [&](EncryptionContext c) {
    return g.Allows(kBob, "Decrypt", std::vector<EncryptionContext>{std::move(c)}, 1);
  };
  EXPECT_TRUE(allows({{"Path", "/a/b"}}));
  EXPECT_TRUE(allows({{"path", "/a/b"}}));
  EXPECT_FALSE(allows({{"Path", "/A/B"}}));
  EXPECT_FALSE(allows({{"Path", "/a/b"}, {"extra", "x"}}));
  EXPECT_FALSE(allows({}));
  // Two keys differing only by case match nothing (fail closed).
  EXPECT_FALSE(allows({{"Path", "/a/b"}, {"path", "/a/b"}}));
  // Constraints do not apply to operations without a context.
  g.operations = {"Decrypt", "DescribeKey"};
  EXPECT_TRUE(g.Allows(kBob, "DescribeKey", {}, 1));
  // A constrained operation given no context at all: refused.
  EXPECT_FALSE(g.Allows(kBob, "Decrypt", {}, 1));
}

TEST(GrantTest, SubsetConstraintAndEveryContextOfABatch) {
  Grant g = DecryptFor("user:bob");
  g.operations = {"GenerateDataKey"};
  g.context_subset = EncryptionContext{{"volume", "v1"}};
  ASSERT_TRUE(ValidateGrant(&g).ok());
  const std::vector<EncryptionContext> good = {{{"volume", "v1"}, {"file", "1"}},
                                               {{"VOLUME", "v1"}}};
  EXPECT_TRUE(g.Allows(kBob, "GenerateDataKey", good, 1));
  std::vector<EncryptionContext> one_bad = good;
  one_bad.push_back({{"volume", "v2"}});
  EXPECT_FALSE(g.Allows(kBob, "GenerateDataKey", one_bad, 1));
}

TEST(GrantTest, ChildGrantsStayWithinTheParent) {
  Grant parent = DecryptFor("user:bob");
  parent.operations = {"CreateGrant", "Decrypt", "Encrypt"};
  parent.context_subset = EncryptionContext{{"volume", "v1"}};
  ASSERT_TRUE(ValidateGrant(&parent).ok());

  Grant child = DecryptFor("user:carol");
  child.context_subset = EncryptionContext{{"Volume", "v1"}, {"file", "7"}};
  EXPECT_TRUE(parent.Covers(child));
  child.context_subset.reset();
  EXPECT_FALSE(parent.Covers(child));  // looser: no constraint
  child.context_equals = EncryptionContext{{"volume", "v1"}, {"file", "7"}};
  EXPECT_TRUE(parent.Covers(child));
  child.operations = {"Decrypt", "ReEncryptFrom"};
  EXPECT_FALSE(parent.Covers(child));  // an operation the parent lacks

  Grant eq_parent = parent;
  eq_parent.context_subset.reset();
  eq_parent.context_equals = EncryptionContext{{"volume", "v1"}};
  Grant eq_child = DecryptFor("user:carol");
  eq_child.context_equals = EncryptionContext{{"VOLUME", "v1"}};
  EXPECT_TRUE(eq_parent.Covers(eq_child));
  eq_child.context_equals = EncryptionContext{{"volume", "v1"}, {"file", "7"}};
  EXPECT_FALSE(eq_parent.Covers(eq_child));

  Grant timed = parent;
  timed.expiry = 500;
  Grant forever = DecryptFor("user:carol");
  forever.context_subset = parent.context_subset;
  EXPECT_FALSE(timed.Covers(forever));
  forever.expiry = 400;
  EXPECT_TRUE(timed.Covers(forever));
}

TEST(GrantTest, ValidationFollowsAws) {
  Grant g = DecryptFor("user:bob");
  g.operations = {"Decrypt", "Frobnicate"};
  EXPECT_FALSE(ValidateGrant(&g).ok());
  g.operations = {};
  EXPECT_FALSE(ValidateGrant(&g).ok());
  g.operations = {"Sign", "Decrypt", "Decrypt"};
  ASSERT_TRUE(ValidateGrant(&g).ok());
  EXPECT_EQ(g.operations, (std::vector<std::string>{"Decrypt", "Sign"}));
  g.context_subset = EncryptionContext{{"a", "b"}};
  EXPECT_FALSE(ValidateGrant(&g).ok());  // Sign takes no context
  g.operations = {"Decrypt", "DescribeKey", "RetireGrant", "CreateGrant"};
  EXPECT_TRUE(ValidateGrant(&g).ok());
  EncryptionContext nine;
  for (int i = 0; i < 9; ++i) nine["k" + std::to_string(i)] = "v";
  g.context_subset = nine;
  EXPECT_FALSE(ValidateGrant(&g).ok());
  g.context_subset = EncryptionContext{{"k", std::string(385, 'v')}};
  EXPECT_FALSE(ValidateGrant(&g).ok());
  g.context_subset = EncryptionContext{};  // empty: as if absent
  EXPECT_TRUE(ValidateGrant(&g).ok());
  EXPECT_FALSE(g.has_constraints());
  for (const char* bad : {"*", "bob", "user:", "arn:aws:iam::1:root", "user:a\nb"}) {
    g.grantee = bad;
    EXPECT_FALSE(ValidateGrant(&g).ok()) << bad;
  }
  g.grantee = "tls:CN=host-a,O=Example";
  EXPECT_TRUE(ValidateGrant(&g).ok());
}

TEST(GrantTest, TokensNameTheirGrant) {
  const std::string key_id = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
  auto id = NewGrantId();
  ASSERT_TRUE(id.ok());
  EXPECT_TRUE(ValidGrantId(*id));
  auto t1 = MakeGrantToken(key_id, *id);
  auto t2 = MakeGrantToken(key_id, *id);
  ASSERT_TRUE(t1.ok() && t2.ok());
  EXPECT_NE(*t1, *t2);  // a new token every time, as AWS
  auto parts = ParseGrantToken(*t1);
  ASSERT_TRUE(parts.ok());
  EXPECT_EQ(parts->key_id, key_id);
  EXPECT_EQ(parts->grant_id, *id);
  for (std::string bad : {std::string("AQID"), std::string("egt1."), *t1 + "x",
                          std::string("egt1.") + "a2V5OmdyYW50Om5vbmNl"}) {
    EXPECT_FALSE(ParseGrantToken(bad).ok()) << bad;
  }
}

TEST(GrantTest, StoredFormRoundTripsInTheKeyRecord) {
  KeyRecord r;
  r.key_id = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
  Grant g = DecryptFor("user:bob");
  g.name = "share-1";
  g.retiring = "user:alice";
  g.issuer = "user:alice";
  g.creation_date = 42;
  g.expiry = 99;
  g.context_equals = EncryptionContext{{"path", "/x"}};
  ASSERT_TRUE(ValidateGrant(&g).ok());
  ASSERT_TRUE(r.AddGrant(g).ok());
  auto back = KeyRecord::FromJson(r.ToJson());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->grants.size(), 1u);
  EXPECT_TRUE(back->grants[0].SameRequest(g));
  EXPECT_EQ(back->grants[0].issuer, "user:alice");
  EXPECT_EQ(back->grants[0].creation_date, 42);
  ASSERT_NE(back->FindGrant(g.grant_id), nullptr);
  EXPECT_TRUE(back->RemoveGrant(g.grant_id).ok());
  EXPECT_EQ(back->RemoveGrant(g.grant_id).code(), StatusCode::kNotFound);
  EXPECT_EQ(r.RemoveExpiredGrants(98), 0u);
  EXPECT_EQ(r.RemoveExpiredGrants(99), 1u);
}

TEST(GrantTest, LimitsPerGranteeAndPerKey) {
  KeyRecord r;
  for (size_t i = 0; i < kMaxGrantsPerGrantee; ++i) {
    Grant g = DecryptFor("user:bob");
    g.grant_id = std::to_string(i);
    ASSERT_TRUE(r.AddGrant(g).ok());
  }
  EXPECT_EQ(r.AddGrant(DecryptFor("user:bob")).code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(r.AddGrant(DecryptFor("user:carol")).ok());
  for (size_t i = r.grants.size(); i < kMaxGrantsPerKey; ++i) {
    ASSERT_TRUE(r.AddGrant(DecryptFor("uid:" + std::to_string(i))).ok());
  }
  EXPECT_EQ(r.AddGrant(DecryptFor("user:dave")).code(), StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace envelope::keyservice
