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
    c.put_aliases.push_back({"alias/app", kKeyId, 5});
    auto lock = store->LockForWrite();
    ASSERT_TRUE(store->Commit(c, nullptr).ok());
  }
  auto store = OpenStore();
  auto e = store->FindKey(kKeyId);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->record.current_version, 2u);
  ASSERT_EQ(e->materials.size(), 2u);
  EXPECT_EQ(e->materials.at(2)->view()[0], 2);
  ASSERT_TRUE(store->FindAlias("alias/app"));
  EXPECT_EQ(store->FindAlias("alias/app")->key_id, kKeyId);
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
  c.put_aliases.push_back({"alias/a", kKeyId, 1});
  auto lock = store->LockForWrite();
  ASSERT_TRUE(store->Commit(c, nullptr).ok());
  KeyStore::Change d;
  d.delete_keys.push_back(kKeyId);
  ASSERT_TRUE(store->Commit(d, nullptr).ok());
  EXPECT_FALSE(store->FindKey(kKeyId));
  EXPECT_FALSE(store->FindAlias("alias/a"));
}

}  // namespace
}  // namespace envelope::keyservice
