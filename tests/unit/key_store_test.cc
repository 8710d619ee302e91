#include "keyservice/key_store.h"

#include <algorithm>
#include <fstream>
#include <iterator>

#include <gtest/gtest.h>

#include "tests/unit/test_files.h"

namespace envelope::keyservice {
namespace {

constexpr char kKeyId[] = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";

KeyRecord Record(uint32_t versions) {
  KeyRecord r;
  r.key_id = kKeyId;
  r.policy = R"({"Statement":{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}})";
  for (uint32_t v = 1; v <= versions; ++v) r.versions.push_back({v, 100 + v, "ON_DEMAND"});
  r.current_version = versions;
  return r;
}

std::shared_ptr<const crypto::SecretBytes> Material(uint8_t fill) {
  return std::make_shared<const crypto::SecretBytes>(std::move(*crypto::SecretBytes::CopyOf(Bytes(32, fill))));
}

class KeyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { root_ = std::move(*crypto::SecretBytes::Random(32)); }
  std::unique_ptr<KeyStore> OpenStore() {
    auto s = KeyStore::Open(dir_.path());
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    EXPECT_TRUE((*s)->Unlock(root_).ok());
    return std::move(*s);
  }
  testing::TempDir dir_;
  crypto::SecretBytes root_;
};

TEST_F(KeyStoreTest, CommitSurvivesReopen) {
  {
    auto store = OpenStore();
    KeyStore::Change c;
    c.put_records.push_back(Record(2));
    c.put_materials.emplace_back(kKeyId, 1, Material(1));
    c.put_materials.emplace_back(kKeyId, 2, Material(2));
    c.put_aliases.push_back({"alias/app", kKeyId, 5, "uid:1000"});
    auto lock = store->LockForWrite();
    ASSERT_TRUE(store->Commit(c, nullptr).ok());
  }
  auto store = OpenStore();
  auto e = store->FindKey(kKeyId);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->record.current_version, 2u);
  ASSERT_EQ(e->materials.size(), 2u);
  EXPECT_EQ(e->materials.at(2)->view()[0], 2);
  ASSERT_TRUE(store->FindAlias("uid:1000", "alias/app"));
  EXPECT_EQ(store->FindAlias("uid:1000", "alias/app")->key_id, kKeyId);
  EXPECT_FALSE(store->FindAlias("uid:0", "alias/app"));
}

TEST_F(KeyStoreTest, MaterialIsNotStoredInTheClear) {
  {
    auto store = OpenStore();
    KeyStore::Change c;
    c.put_records.push_back(Record(1));
    c.put_materials.emplace_back(kKeyId, 1, Material(0xab));
    auto lock = store->LockForWrite();
    ASSERT_TRUE(store->Commit(c, nullptr).ok());
  }
  Bytes db;
  {
    std::ifstream in(dir_.File("data.mdb"), std::ios::binary);
    db.assign(std::istreambuf_iterator<char>(in), {});
  }
  Bytes needle(32, 0xab);
  EXPECT_EQ(std::search(db.begin(), db.end(), needle.begin(), needle.end()), db.end());
}

TEST_F(KeyStoreTest, WrongRootKeyIsRefused) {
  { OpenStore(); }
  auto store = KeyStore::Open(dir_.path());
  ASSERT_TRUE(store.ok());
  auto wrong = crypto::SecretBytes::Random(32);
  EXPECT_EQ((*store)->Unlock(*wrong).code(), StatusCode::kFailedPrecondition);
}

TEST_F(KeyStoreTest, FailedAuditAbortsTheChange) {
  auto store = OpenStore();
  KeyStore::Change c;
  c.put_records.push_back(Record(1));
  c.put_materials.emplace_back(kKeyId, 1, Material(1));
  auto lock = store->LockForWrite();
  Status s = store->Commit(c, [] { return Status::IoError("audit log full", ENOSPC); });
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(store->FindKey(kKeyId));
  lock.unlock();
  store.reset();
  EXPECT_FALSE(OpenStore()->FindKey(kKeyId));
}

TEST_F(KeyStoreTest, RetiredMaterialIsGoneAfterReopen) {
  {
    auto store = OpenStore();
    KeyStore::Change c;
    KeyRecord r = Record(3);
    c.put_records.push_back(r);
    for (uint32_t v = 1; v <= 3; ++v) c.put_materials.emplace_back(kKeyId, v, Material(v));
    auto lock = store->LockForWrite();
    ASSERT_TRUE(store->Commit(c, nullptr).ok());
    KeyStore::Change retire;
    r.min_version = 3;
    retire.put_records.push_back(r);
    retire.delete_materials.emplace_back(kKeyId, 1);
    retire.delete_materials.emplace_back(kKeyId, 2);
    ASSERT_TRUE(store->Commit(retire, nullptr).ok());
    EXPECT_EQ(store->FindKey(kKeyId)->materials.size(), 1u);
  }
  auto e = OpenStore()->FindKey(kKeyId);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->materials.size(), 1u);
  EXPECT_EQ(e->materials.count(3), 1u);
}

TEST_F(KeyStoreTest, DeleteKeyRemovesItsAliases) {
  auto store = OpenStore();
  KeyStore::Change c;
  c.put_records.push_back(Record(1));
  c.put_materials.emplace_back(kKeyId, 1, Material(1));
  c.put_aliases.push_back({"alias/a", kKeyId, 1, "uid:1000"});
  c.put_aliases.push_back({"alias/a", kKeyId, 1, "key:ci-bot"});
  auto lock = store->LockForWrite();
  ASSERT_TRUE(store->Commit(c, nullptr).ok());
  KeyStore::Change d;
  d.delete_keys.push_back(kKeyId);
  ASSERT_TRUE(store->Commit(d, nullptr).ok());
  EXPECT_FALSE(store->FindKey(kKeyId));
  EXPECT_FALSE(store->FindAlias("uid:1000", "alias/a"));
  EXPECT_FALSE(store->FindAlias("key:ci-bot", "alias/a"));
  EXPECT_TRUE(store->AllAliases().empty());
}

// The same alias name in two principals' namespaces: two aliases, each
// found only by its owner, also after reopening; the key record keeps its
// creator.
TEST_F(KeyStoreTest, AliasesArePerPrincipal) {
  constexpr char kOther[] = "9a0e8c1d-5b7f-4e2a-9c3d-1f2e3d4c5b6a";
  {
    auto store = OpenStore();
    KeyStore::Change c;
    KeyRecord mine = Record(1);
    mine.creator = "uid:0";
    KeyRecord theirs = Record(1);
    theirs.key_id = kOther;
    theirs.creator = "uid:65534";
    c.put_records = {mine, theirs};
    c.put_materials.emplace_back(kKeyId, 1, Material(1));
    c.put_materials.emplace_back(kOther, 1, Material(2));
    c.put_aliases.push_back({"alias/home", kKeyId, 1, "uid:0"});
    c.put_aliases.push_back({"alias/home", kOther, 1, "uid:65534"});
    auto lock = store->LockForWrite();
    ASSERT_TRUE(store->Commit(c, nullptr).ok());
  }
  auto store = OpenStore();
  EXPECT_EQ(store->FindAlias("uid:0", "alias/home")->key_id, kKeyId);
  EXPECT_EQ(store->FindAlias("uid:65534", "alias/home")->key_id, kOther);
  EXPECT_FALSE(store->FindAlias("uid:1000", "alias/home"));
  EXPECT_EQ(store->AllAliases().size(), 2u);
  EXPECT_EQ(store->FindKey(kOther)->record.creator, "uid:65534");
  auto lock = store->LockForWrite();
  KeyStore::Change d;
  d.delete_aliases.push_back({"alias/home", "", 0, "uid:65534"});
  ASSERT_TRUE(store->Commit(d, nullptr).ok());
  EXPECT_TRUE(store->FindAlias("uid:0", "alias/home"));
  EXPECT_FALSE(store->FindAlias("uid:65534", "alias/home"));
}

// An alias stored before namespaces existed has no owner: it is kept and
// listed, but resolves for nobody (not even root), so an alias someone
// planted under the old global namespace captures no one.
TEST_F(KeyStoreTest, OwnerlessLegacyAliasResolvesForNobody) {
  {
    auto store = OpenStore();
    KeyStore::Change c;
    c.put_records.push_back(Record(1));
    c.put_materials.emplace_back(kKeyId, 1, Material(1));
    c.put_aliases.push_back({"alias/home", kKeyId, 1, ""});
    auto lock = store->LockForWrite();
    ASSERT_TRUE(store->Commit(c, nullptr).ok());
  }
  auto store = OpenStore();
  EXPECT_FALSE(store->FindAlias("uid:0", "alias/home"));
  EXPECT_FALSE(store->FindAlias("", "alias/home"));
  ASSERT_EQ(store->AllAliases().size(), 1u);
  EXPECT_EQ(store->AllAliases()[0].owner, "");
  EXPECT_EQ(store->AllAliases()[0].name, "alias/home");
}

// A rotated root key: everything sealed is re-sealed, the old key no longer
// opens the store, kept secrets keep their value, and a rotation whose
// before_commit fails changes nothing.
TEST_F(KeyStoreTest, RotateRootReSealsEverythingInOneTransaction) {
  auto secret = [] { return crypto::SecretBytes::CopyOf(Bytes(32, 0x77)); };
  {
    auto store = OpenStore();
    KeyStore::Change c;
    c.put_records.push_back(Record(2));
    c.put_materials.emplace_back(kKeyId, 1, Material(1));
    c.put_materials.emplace_back(kKeyId, 2, Material(2));
    auto lock = store->LockForWrite();
    ASSERT_TRUE(store->Commit(c, nullptr).ok());
    ASSERT_TRUE(store->KeptSecret("audit-mac-key", secret).ok());
  }
  auto next = std::move(*crypto::SecretBytes::Random(32));
  {
    auto store = OpenStore();
    auto lock = store->LockForWrite();
    // A failed before_commit: nothing changes.
    EXPECT_FALSE(store->RotateRoot(next, [] { return Status::Internal("no"); }).ok());
  }
  {
    auto store = OpenStore();  // still the old root key
    auto lock = store->LockForWrite();
    ASSERT_TRUE(store->RotateRoot(next, [] { return Status::Ok(); }).ok());
    // Online: the store goes on with the new KEK.
    KeyStore::Change c;
    KeyRecord r = Record(3);
    c.put_records.push_back(r);
    c.put_materials.emplace_back(kKeyId, 3, Material(3));
    ASSERT_TRUE(store->Commit(c, nullptr).ok());
  }
  auto reopened = KeyStore::Open(dir_.path());
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ((*reopened)->Unlock(root_).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE((*reopened)->Unlock(next).ok());
  auto e = (*reopened)->FindKey(kKeyId);
  ASSERT_TRUE(e);
  ASSERT_EQ(e->materials.size(), 3u);
  for (uint8_t v = 1; v <= 3; ++v) EXPECT_EQ(e->materials.at(v)->view()[0], v);
  bool made = false;
  auto kept = (*reopened)->KeptSecret("audit-mac-key", [&] {
    made = true;
    return crypto::SecretBytes::CopyOf(Bytes(32, 0));
  });
  ASSERT_TRUE(kept.ok());
  EXPECT_FALSE(made);
  EXPECT_EQ(kept->view()[0], 0x77);
}

// A change of root-key kind: the new kind's meta is written and the old
// kind's deleted in the commit that re-seals the store; OpensWith tells the
// current root key from the old without unlocking anything.
TEST_F(KeyStoreTest, RotateRootWritesAndDeletesMetaAndOpensWithTellsTheKeys) {
  auto next = std::move(*crypto::SecretBytes::Random(32));
  {
    auto store = OpenStore();
    ASSERT_TRUE(store->PutMeta("scrypt-salt", "old salt").ok());
    EXPECT_TRUE(*store->OpensWith(root_));
    EXPECT_FALSE(*store->OpensWith(next));
    auto lock = store->LockForWrite();
    ASSERT_TRUE(store->RotateRoot(next, [] { return Status::Ok(); },
                                  {{"root-key-mode", "pkcs11"}, {"root-key-on-token", "sealed"}},
                                  {"scrypt-salt", "not-there"})
                    .ok());
    EXPECT_FALSE(*store->OpensWith(root_));
    EXPECT_TRUE(*store->OpensWith(next));
  }
  auto reopened = KeyStore::Open(dir_.path());
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ(*(*reopened)->GetMeta("root-key-mode"), "pkcs11");
  EXPECT_EQ(*(*reopened)->GetMeta("root-key-on-token"), "sealed");
  EXPECT_FALSE((*reopened)->GetMeta("scrypt-salt")->has_value());
  ASSERT_TRUE((*reopened)->Unlock(next).ok());
}

}  // namespace
}  // namespace envelope::keyservice
