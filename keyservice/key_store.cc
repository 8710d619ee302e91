#include "keyservice/key_store.h"

#include <lmdb.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cstring>

#include "core/base/coding.h"
#include "core/base/fd_io.h"
#include "core/crypto/aes_gcm.h"
#include "core/crypto/hash.h"
#include "keyservice/ciphertext_blob.h"

namespace envelope::keyservice {

namespace {

// 1 GiB of address space; LMDB grows the file only as data is written.
constexpr size_t kMapSizeInBytes = size_t{1} << 30;
constexpr std::string_view kKekInfo = "envelope-keyd/v1/material-kek";
constexpr std::string_view kCheckInfo = "envelope-keyd/v1/root-check";
constexpr std::string_view kCheckPlaintext = "envelope-keyd root key check v1";
constexpr std::string_view kMaterialAadDomain = "envelope-keyd/v1/material";
constexpr std::string_view kKeptPrefix = "sealed:";
constexpr std::string_view kKeptAadDomain = "envelope-keyd/v1/kept-secret/";

Status LmdbError(const char* what, int rc) {
  return Status::IoError(std::string(what) + ": " + mdb_strerror(rc),
                         rc > 0 ? rc : EIO);
}

MDB_val Val(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}
MDB_val Val(const Bytes& b) {
  return MDB_val{b.size(), const_cast<uint8_t*>(b.data())};
}

// RAII transaction: aborts unless committed (as lmdbxx does).
class Txn {
 public:
  Txn(MDB_env* env, bool read_only) {
    rc_ = mdb_txn_begin(env, nullptr, read_only ? MDB_RDONLY : 0, &txn_);
  }
  ~Txn() {
    if (txn_ != nullptr) mdb_txn_abort(txn_);
  }
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  Status status() const { return rc_ == 0 ? Status::Ok() : LmdbError("mdb_txn_begin", rc_); }
  MDB_txn* get() { return txn_; }
  Status Commit() {
    MDB_txn* t = txn_;
    txn_ = nullptr;  // commit frees the handle whether or not it succeeds
    int rc = mdb_txn_commit(t);
    return rc == 0 ? Status::Ok() : LmdbError("mdb_txn_commit", rc);
  }

 private:
  MDB_txn* txn_ = nullptr;
  int rc_ = 0;
};

// Material entries are keyed by raw key id (16) || version (u32 big-endian),
// so one key's versions sort together in ascending order.
Bytes MaterialKey(const std::string& key_id, uint32_t version) {
  KeyIdBytes id{};
  ParseKeyId(key_id, &id);
  Bytes k(id.begin(), id.end());
  for (int shift = 24; shift >= 0; shift -= 8) k.push_back(static_cast<uint8_t>(version >> shift));
  return k;
}

Bytes MaterialAad(const Bytes& material_key) {
  return Concat({AsBytes(kMaterialAadDomain), material_key});
}

}  // namespace

std::string AliasStoreKey(const std::string& owner, const std::string& name) {
  return owner.empty() ? name : owner + "|" + name;
}

struct KeyStore::Lmdb {
  MDB_env* env = nullptr;
  MDB_dbi keys = 0, materials = 0, aliases = 0, meta = 0;
  ~Lmdb() {
    if (env != nullptr) mdb_env_close(env);
  }
};

KeyStore::KeyStore(std::unique_ptr<Lmdb> lmdb) : lmdb_(std::move(lmdb)) {}
KeyStore::~KeyStore() = default;

StatusOr<std::unique_ptr<KeyStore>> KeyStore::Open(const std::string& dir) {
  auto l = std::make_unique<Lmdb>();
  int rc = mdb_env_create(&l->env);
  if (rc != 0) return LmdbError("mdb_env_create", rc);
  mdb_env_set_maxdbs(l->env, 8);
  mdb_env_set_mapsize(l->env, kMapSizeInBytes);
  // Default flags: every commit is durable (fsync), which is what makes an
  // acknowledged CreateKey or RotateKeyOnDemand survive kill -9 and power
  // loss. MDB_NOTLS: transactions are not tied to threads.
  rc = mdb_env_open(l->env, dir.c_str(), MDB_NOTLS, 0600);
  if (rc != 0) return LmdbError(("mdb_env_open " + dir).c_str(), rc);
  Txn txn(l->env, false);
  ENVELOPE_RETURN_IF_ERROR(txn.status());
  for (auto [name, dbi] : {std::pair{"keys", &l->keys}, std::pair{"materials", &l->materials},
                           std::pair{"aliases", &l->aliases}, std::pair{"meta", &l->meta}}) {
    rc = mdb_dbi_open(txn.get(), name, MDB_CREATE, dbi);
    if (rc != 0) return LmdbError("mdb_dbi_open", rc);
  }
  ENVELOPE_RETURN_IF_ERROR(txn.Commit());
  return std::unique_ptr<KeyStore>(new KeyStore(std::move(l)));
}

StatusOr<std::optional<std::string>> KeyStore::GetMeta(const std::string& name) {
  Txn txn(lmdb_->env, true);
  ENVELOPE_RETURN_IF_ERROR(txn.status());
  MDB_val k = Val(name), v;
  int rc = mdb_get(txn.get(), lmdb_->meta, &k, &v);
  if (rc == MDB_NOTFOUND) return std::optional<std::string>();
  if (rc != 0) return LmdbError("mdb_get meta", rc);
  return std::optional<std::string>(std::string(static_cast<char*>(v.mv_data), v.mv_size));
}

Status KeyStore::PutMeta(const std::string& name, const std::string& value) {
  Txn txn(lmdb_->env, false);
  ENVELOPE_RETURN_IF_ERROR(txn.status());
  MDB_val k = Val(name), v = Val(value);
  int rc = mdb_put(txn.get(), lmdb_->meta, &k, &v, 0);
  if (rc != 0) return LmdbError("mdb_put meta", rc);
  return txn.Commit();
}

StatusOr<std::string> KeyStore::GetOrCreateMeta(const std::string& name,
                                                const std::function<std::string()>& init) {
  ENVELOPE_ASSIGN_OR_RETURN(std::optional<std::string> v, GetMeta(name));
  if (v) return *v;
  std::string value = init();
  ENVELOPE_RETURN_IF_ERROR(PutMeta(name, value));
  return value;
}

StatusOr<std::string> KeyStore::Snapshot() {
  UniqueFd fd(::memfd_create("envelope-keyd-snapshot", MFD_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("memfd_create");
  if (int rc = mdb_env_copyfd2(lmdb_->env, fd.get(), MDB_CP_COMPACT); rc != 0) {
    return Status::Internal(std::string("mdb_env_copyfd2: ") + mdb_strerror(rc));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("fstat of the snapshot");
  std::string out(static_cast<size_t>(st.st_size), '\0');
  ENVELOPE_ASSIGN_OR_RETURN(
      size_t n, PreadFull(fd.get(), MutableByteView(reinterpret_cast<uint8_t*>(out.data()), out.size()), 0));
  if (n != out.size()) return Status::Internal("short read of the snapshot");
  return out;
}

namespace {

struct RootDerived {
  crypto::SecretBytes kek;
  std::string check;  // the sealed check value
};

StatusOr<RootDerived> DeriveFromRoot(const crypto::SecretBytes& root_key) {
  RootDerived d;
  ENVELOPE_ASSIGN_OR_RETURN(d.kek, crypto::HkdfSha256(root_key.view(), ByteView(), kKekInfo, 32));
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes check_key,
                            crypto::HkdfSha256(root_key.view(), ByteView(), kCheckInfo, 32));
  ENVELOPE_ASSIGN_OR_RETURN(crypto::Aes256Gcm check, crypto::Aes256Gcm::New(check_key.view()));
  Bytes sealed(kCheckPlaintext.size() + crypto::Aes256Gcm::kOverheadInBytes);
  ENVELOPE_RETURN_IF_ERROR(check.Seal(AsBytes(kCheckPlaintext), ByteView(), sealed));
  d.check.assign(sealed.begin(), sealed.end());
  return d;
}

// Calls fn(key, value) for every entry of `dbi`, in key order.
Status ForEachEntry(MDB_txn* txn, MDB_dbi dbi,
                    const std::function<void(std::string_view, std::string_view)>& fn) {
  MDB_cursor* cur = nullptr;
  int rc = mdb_cursor_open(txn, dbi, &cur);
  if (rc != 0) return LmdbError("mdb_cursor_open", rc);
  MDB_val k, v;
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    fn(std::string_view(static_cast<char*>(k.mv_data), k.mv_size),
       std::string_view(static_cast<char*>(v.mv_data), v.mv_size));
  }
  mdb_cursor_close(cur);
  return rc == MDB_NOTFOUND ? Status::Ok() : LmdbError("mdb_cursor_get", rc);
}

Bytes KeptAad(std::string_view meta_name) {
  return Concat({AsBytes(kKeptAadDomain), AsBytes(meta_name)});
}

}  // namespace

StatusOr<std::optional<crypto::SecretBytes>> KeyStore::GetSecret(const std::string& name) {
  if (!kek_) return Status::FailedPrecondition("key store is locked");
  const std::string meta_name = std::string(kKeptPrefix) + name;
  ENVELOPE_ASSIGN_OR_RETURN(std::optional<std::string> stored, GetMeta(meta_name));
  if (!stored) return std::optional<crypto::SecretBytes>();
  ENVELOPE_ASSIGN_OR_RETURN(crypto::Aes256Gcm aead, crypto::Aes256Gcm::New(kek_->view()));
  if (stored->size() < crypto::Aes256Gcm::kOverheadInBytes) {
    return Status::Corruption("kept secret " + name + " is damaged");
  }
  ENVELOPE_ASSIGN_OR_RETURN(
      crypto::SecretBytes out,
      crypto::SecretBytes::Zeroed(stored->size() - crypto::Aes256Gcm::kOverheadInBytes));
  if (!aead.Open(AsBytes(*stored), KeptAad(meta_name), out.mutable_view()).ok()) {
    return Status::Corruption("kept secret " + name + " fails authentication");
  }
  return std::optional<crypto::SecretBytes>(std::move(out));
}

StatusOr<crypto::SecretBytes> KeyStore::KeptSecret(
    const std::string& name, const std::function<StatusOr<crypto::SecretBytes>()>& make) {
  ENVELOPE_ASSIGN_OR_RETURN(std::optional<crypto::SecretBytes> kept, GetSecret(name));
  if (kept) return std::move(*kept);
  const std::string meta_name = std::string(kKeptPrefix) + name;
  ENVELOPE_ASSIGN_OR_RETURN(crypto::Aes256Gcm aead, crypto::Aes256Gcm::New(kek_->view()));
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes made, make());
  Bytes sealed(made.size() + crypto::Aes256Gcm::kOverheadInBytes);
  ENVELOPE_RETURN_IF_ERROR(aead.Seal(made.view(), KeptAad(meta_name), sealed));
  ENVELOPE_RETURN_IF_ERROR(PutMeta(meta_name, std::string(sealed.begin(), sealed.end())));
  return made;
}

Status KeyStore::RotateRoot(const crypto::SecretBytes& new_root,
                            const std::function<Status()>& before_commit,
                            const std::vector<std::pair<std::string, std::string>>& put_meta,
                            const std::vector<std::string>& delete_meta) {
  if (!kek_) return Status::FailedPrecondition("key store is locked");
  ENVELOPE_ASSIGN_OR_RETURN(RootDerived next, DeriveFromRoot(new_root));
  ENVELOPE_ASSIGN_OR_RETURN(crypto::Aes256Gcm from, crypto::Aes256Gcm::New(kek_->view()));
  ENVELOPE_ASSIGN_OR_RETURN(crypto::Aes256Gcm to, crypto::Aes256Gcm::New(next.kek.view()));
  Txn txn(lmdb_->env, false);
  ENVELOPE_RETURN_IF_ERROR(txn.status());
  // Everything sealed under the KEK, as (database, LMDB key, AAD, sealed):
  // read first, written after, so no cursor walks what it changes.
  struct Sealed {
    MDB_dbi dbi;
    std::string key;
    Bytes aad;
    std::string value;
  };
  std::vector<Sealed> all;
  ENVELOPE_RETURN_IF_ERROR(ForEachEntry(txn.get(), lmdb_->materials,
                                        [&](std::string_view key, std::string_view value) {
    const Bytes mk(key.begin(), key.end());
    all.push_back({lmdb_->materials, std::string(key), MaterialAad(mk), std::string(value)});
  }));
  ENVELOPE_RETURN_IF_ERROR(ForEachEntry(txn.get(), lmdb_->meta,
                                        [&](std::string_view name, std::string_view value) {
    if (name.rfind(kKeptPrefix, 0) != 0) return;
    all.push_back({lmdb_->meta, std::string(name), KeptAad(name), std::string(value)});
  }));
  int rc = 0;
  for (const Sealed& item : all) {
    if (item.value.size() < crypto::Aes256Gcm::kOverheadInBytes) {
      return Status::Corruption("a sealed value in the store is cut short");
    }
    ENVELOPE_ASSIGN_OR_RETURN(
        crypto::SecretBytes plain,
        crypto::SecretBytes::Zeroed(item.value.size() - crypto::Aes256Gcm::kOverheadInBytes));
    if (!from.Open(AsBytes(item.value), item.aad, plain.mutable_view()).ok()) {
      return Status::Corruption("a sealed value in the store fails authentication");
    }
    Bytes resealed(item.value.size());
    ENVELOPE_RETURN_IF_ERROR(to.Seal(plain.view(), item.aad, resealed));
    MDB_val rk = Val(item.key), rv = Val(resealed);
    rc = mdb_put(txn.get(), item.dbi, &rk, &rv, 0);
    if (rc != 0) return LmdbError("mdb_put", rc);
  }
  const std::string check_name = "root-check";
  MDB_val ck = Val(check_name), cv = Val(next.check);
  rc = mdb_put(txn.get(), lmdb_->meta, &ck, &cv, 0);
  if (rc != 0) return LmdbError("mdb_put root-check", rc);
  for (const auto& [name, value] : put_meta) {
    MDB_val k = Val(name), v = Val(value);
    if ((rc = mdb_put(txn.get(), lmdb_->meta, &k, &v, 0)) != 0) return LmdbError("mdb_put meta", rc);
  }
  for (const std::string& name : delete_meta) {
    MDB_val k = Val(name);
    rc = mdb_del(txn.get(), lmdb_->meta, &k, nullptr);
    if (rc != 0 && rc != MDB_NOTFOUND) return LmdbError("mdb_del meta", rc);
  }
  ENVELOPE_RETURN_IF_ERROR(before_commit());
  ENVELOPE_RETURN_IF_ERROR(txn.Commit());
  kek_ = std::make_unique<crypto::SecretBytes>(std::move(next.kek));
  return Status::Ok();
}

namespace {
// Whether `stored` (the `root-check` value) opens under the check key of
// `root_key`.
StatusOr<bool> CheckValueOpens(const crypto::SecretBytes& root_key, const std::string& stored) {
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes check_key,
                            crypto::HkdfSha256(root_key.view(), ByteView(), kCheckInfo, 32));
  ENVELOPE_ASSIGN_OR_RETURN(crypto::Aes256Gcm check, crypto::Aes256Gcm::New(check_key.view()));
  Bytes out(stored.size() >= crypto::Aes256Gcm::kOverheadInBytes
                ? stored.size() - crypto::Aes256Gcm::kOverheadInBytes
                : 0);
  return check.Open(AsBytes(stored), ByteView(), out).ok();
}
}  // namespace

StatusOr<bool> KeyStore::OpensWith(const crypto::SecretBytes& root_key) {
  ENVELOPE_ASSIGN_OR_RETURN(std::optional<std::string> stored, GetMeta("root-check"));
  if (!stored) return false;
  return CheckValueOpens(root_key, *stored);
}

Status KeyStore::Unlock(const crypto::SecretBytes& root_key) {
  ENVELOPE_ASSIGN_OR_RETURN(std::optional<std::string> stored, GetMeta("root-check"));
  if (!stored) {
    ENVELOPE_ASSIGN_OR_RETURN(RootDerived first, DeriveFromRoot(root_key));
    ENVELOPE_RETURN_IF_ERROR(PutMeta("root-check", first.check));
    kek_ = std::make_unique<crypto::SecretBytes>(std::move(first.kek));
    return LoadAll();
  }
  ENVELOPE_ASSIGN_OR_RETURN(bool opens, CheckValueOpens(root_key, *stored));
  if (!opens) {
    return Status::FailedPrecondition(
        "the root key does not open this data directory (wrong key file or passphrase)");
  }
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes kek,
                            crypto::HkdfSha256(root_key.view(), ByteView(), kKekInfo, 32));
  kek_ = std::make_unique<crypto::SecretBytes>(std::move(kek));
  return LoadAll();
}

Status KeyStore::LoadAll() {
  Txn txn(lmdb_->env, true);
  ENVELOPE_RETURN_IF_ERROR(txn.status());
  ENVELOPE_ASSIGN_OR_RETURN(crypto::Aes256Gcm aead, crypto::Aes256Gcm::New(kek_->view()));
  std::map<std::string, std::shared_ptr<const KeyEntry>> keys;
  std::map<std::string, AliasEntry> aliases;

  MDB_cursor* cur = nullptr;
  int rc = mdb_cursor_open(txn.get(), lmdb_->keys, &cur);
  if (rc != 0) return LmdbError("mdb_cursor_open", rc);
  MDB_val k, v;
  Status status;
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && status.ok();
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    auto record = KeyRecord::FromJson(std::string_view(static_cast<char*>(v.mv_data), v.mv_size));
    if (!record.ok()) {
      status = record.status();
      break;
    }
    auto policy = KeyPolicy::Parse(record->policy);
    if (!policy.ok()) {
      status = Status::Corruption("stored policy of " + record->key_id + " no longer parses");
      break;
    }
    auto entry = std::make_shared<KeyEntry>(KeyEntry{*record, std::move(*policy), {}});
    // An EXTERNAL key whose material was never imported or was deleted.
    const bool no_material = record->external() && !record->material_imported;
    for (const auto& ver : record->versions) {
      if (no_material) break;
      if (ver.number < record->min_version) continue;  // retired: no material
      if (record->on_token()) continue;                // its material is on the token
      Bytes mk = MaterialKey(record->key_id, ver.number);
      MDB_val mkv = Val(mk), mv;
      int mrc = mdb_get(txn.get(), lmdb_->materials, &mkv, &mv);
      if (mrc != 0) {
        status = Status::Corruption("material of " + record->key_id + " version " +
                                    std::to_string(ver.number) + " is missing");
        break;
      }
      // 32 bytes for a symmetric key; an HMAC key or a key pair's PKCS#8
      // DER is longer (key_spec.h).
      if (mv.mv_size <= crypto::Aes256Gcm::kOverheadInBytes) {
        status = Status::Corruption("material of " + record->key_id + " version " +
                                    std::to_string(ver.number) + " is cut short");
        break;
      }
      auto material = crypto::SecretBytes::Zeroed(mv.mv_size - crypto::Aes256Gcm::kOverheadInBytes);
      if (!material.ok()) {
        status = material.status();
        break;
      }
      Status open = aead.Open(ByteView(static_cast<uint8_t*>(mv.mv_data), mv.mv_size),
                              MaterialAad(mk), material->mutable_view());
      if (!open.ok()) {
        status = Status::Corruption("material of " + record->key_id + " version " +
                                    std::to_string(ver.number) + " fails authentication");
        break;
      }
      entry->materials[ver.number] =
          std::make_shared<const crypto::SecretBytes>(std::move(*material));
    }
    keys[record->key_id] = std::move(entry);
  }
  mdb_cursor_close(cur);
  ENVELOPE_RETURN_IF_ERROR(status);

  ENVELOPE_RETURN_IF_ERROR(ForEachEntry(txn.get(), lmdb_->aliases,
                                        [&](std::string_view key, std::string_view text) {
    const std::string store_key(key), value(text);
    auto bar = store_key.rfind('|');
    AliasEntry a;
    a.owner = bar == std::string::npos ? "" : store_key.substr(0, bar);
    a.name = bar == std::string::npos ? store_key : store_key.substr(bar + 1);
    auto space = value.find(' ');
    a.key_id = value.substr(0, space);
    if (space != std::string::npos) {
      a.creation_date = std::strtoll(value.c_str() + space + 1, nullptr, 10);
    }
    aliases[store_key] = a;
  }));

  std::unique_lock lock(state_mu_);
  keys_ = std::move(keys);
  aliases_ = std::move(aliases);
  return Status::Ok();
}

std::shared_ptr<const KeyEntry> KeyStore::FindKey(const std::string& key_id) const {
  std::shared_lock lock(state_mu_);
  auto it = keys_.find(key_id);
  return it == keys_.end() ? nullptr : it->second;
}

std::optional<AliasEntry> KeyStore::FindAlias(const std::string& owner,
                                              const std::string& name) const {
  if (owner.empty()) return std::nullopt;  // legacy aliases resolve for nobody
  std::shared_lock lock(state_mu_);
  auto it = aliases_.find(AliasStoreKey(owner, name));
  if (it == aliases_.end()) return std::nullopt;
  return it->second;
}

std::vector<std::shared_ptr<const KeyEntry>> KeyStore::AllKeys() const {
  std::shared_lock lock(state_mu_);
  std::vector<std::shared_ptr<const KeyEntry>> out;
  for (const auto& [id, e] : keys_) out.push_back(e);
  return out;
}

std::vector<AliasEntry> KeyStore::AllAliases() const {
  std::shared_lock lock(state_mu_);
  std::vector<AliasEntry> out;
  for (const auto& [name, a] : aliases_) out.push_back(a);
  return out;
}

Status KeyStore::Commit(const Change& change, const std::function<Status()>& before_commit) {
  if (!kek_) return Status::FailedPrecondition("key store is locked");
  ENVELOPE_ASSIGN_OR_RETURN(crypto::Aes256Gcm aead, crypto::Aes256Gcm::New(kek_->view()));
  Txn txn(lmdb_->env, false);
  ENVELOPE_RETURN_IF_ERROR(txn.status());
  int rc = 0;

  // Stage the new in-memory state alongside the transaction.
  std::map<std::string, std::shared_ptr<KeyEntry>> staged;
  auto stage = [&](const std::string& key_id) -> std::shared_ptr<KeyEntry>& {
    auto& slot = staged[key_id];
    if (!slot) {
      auto current = FindKey(key_id);
      slot = current ? std::make_shared<KeyEntry>(*current)
                     : std::make_shared<KeyEntry>(KeyEntry{KeyRecord{}, *KeyPolicy::Parse(
                           R"({"Statement":{"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*"}})"), {}});
    }
    return slot;
  };

  for (const KeyRecord& r : change.put_records) {
    auto policy = KeyPolicy::Parse(r.policy);
    if (!policy.ok()) return Status::Internal("BUG: committing an unparsable policy");
    std::string json = r.ToJson();
    MDB_val k = Val(r.key_id), v = Val(json);
    if ((rc = mdb_put(txn.get(), lmdb_->keys, &k, &v, 0)) != 0) return LmdbError("mdb_put key", rc);
    auto& e = stage(r.key_id);
    e->record = r;
    e->policy = std::move(*policy);
  }
  for (const auto& [key_id, version, material] : change.put_materials) {
    Bytes mk = MaterialKey(key_id, version);
    Bytes sealed(material->size() + crypto::Aes256Gcm::kOverheadInBytes);
    ENVELOPE_RETURN_IF_ERROR(aead.Seal(material->view(), MaterialAad(mk), sealed));
    MDB_val k = Val(mk), v = Val(sealed);
    if ((rc = mdb_put(txn.get(), lmdb_->materials, &k, &v, 0)) != 0) {
      return LmdbError("mdb_put material", rc);
    }
    stage(key_id)->materials[version] = material;
  }
  for (const auto& [key_id, version] : change.delete_materials) {
    Bytes mk = MaterialKey(key_id, version);
    MDB_val k = Val(mk);
    rc = mdb_del(txn.get(), lmdb_->materials, &k, nullptr);
    if (rc != 0 && rc != MDB_NOTFOUND) return LmdbError("mdb_del material", rc);
    stage(key_id)->materials.erase(version);
  }
  std::vector<std::string> deleted_aliases;
  for (const AliasEntry& a : change.delete_aliases) {
    deleted_aliases.push_back(AliasStoreKey(a.owner, a.name));
  }
  for (const std::string& key_id : change.delete_keys) {
    auto current = FindKey(key_id);
    MDB_val k = Val(key_id);
    rc = mdb_del(txn.get(), lmdb_->keys, &k, nullptr);
    if (rc != 0 && rc != MDB_NOTFOUND) return LmdbError("mdb_del key", rc);
    if (current) {
      for (const auto& [version, m] : current->materials) {
        Bytes mk = MaterialKey(key_id, version);
        MDB_val mkv = Val(mk);
        rc = mdb_del(txn.get(), lmdb_->materials, &mkv, nullptr);
        if (rc != 0 && rc != MDB_NOTFOUND) return LmdbError("mdb_del material", rc);
      }
    }
    for (const AliasEntry& a : AllAliases()) {
      if (a.key_id == key_id) deleted_aliases.push_back(AliasStoreKey(a.owner, a.name));
    }
  }
  for (const AliasEntry& a : change.put_aliases) {
    std::string value = a.key_id + " " + std::to_string(a.creation_date);
    std::string store_key = AliasStoreKey(a.owner, a.name);
    MDB_val k = Val(store_key), v = Val(value);
    if ((rc = mdb_put(txn.get(), lmdb_->aliases, &k, &v, 0)) != 0) return LmdbError("mdb_put alias", rc);
  }
  for (const std::string& name : deleted_aliases) {
    MDB_val k = Val(name);
    rc = mdb_del(txn.get(), lmdb_->aliases, &k, nullptr);
    if (rc != 0 && rc != MDB_NOTFOUND) return LmdbError("mdb_del alias", rc);
  }

  for (const auto& [name, value] : change.put_meta) {
    MDB_val k = Val(name), v = Val(value);
    if ((rc = mdb_put(txn.get(), lmdb_->meta, &k, &v, 0)) != 0) return LmdbError("mdb_put meta", rc);
  }
  for (const std::string& name : change.delete_meta) {
    MDB_val k = Val(name);
    rc = mdb_del(txn.get(), lmdb_->meta, &k, nullptr);
    if (rc != 0 && rc != MDB_NOTFOUND) return LmdbError("mdb_del meta", rc);
  }
  for (const auto& [name, secret] : change.put_secrets) {
    const std::string meta_name = std::string(kKeptPrefix) + name;
    Bytes sealed(secret->size() + crypto::Aes256Gcm::kOverheadInBytes);
    ENVELOPE_RETURN_IF_ERROR(aead.Seal(secret->view(), KeptAad(meta_name), sealed));
    MDB_val k = Val(meta_name), v = Val(sealed);
    if ((rc = mdb_put(txn.get(), lmdb_->meta, &k, &v, 0)) != 0) return LmdbError("mdb_put secret", rc);
  }
  for (const std::string& name : change.delete_secrets) {
    const std::string meta_name = std::string(kKeptPrefix) + name;
    MDB_val k = Val(meta_name);
    rc = mdb_del(txn.get(), lmdb_->meta, &k, nullptr);
    if (rc != 0 && rc != MDB_NOTFOUND) return LmdbError("mdb_del secret", rc);
  }

  // The audit record goes out before the commit: if it cannot be written,
  // the change is abandoned (fail closed).
  if (before_commit) ENVELOPE_RETURN_IF_ERROR(before_commit());
  ENVELOPE_RETURN_IF_ERROR(txn.Commit());

  std::unique_lock lock(state_mu_);
  for (auto& [key_id, entry] : staged) keys_[key_id] = std::move(entry);
  for (const std::string& key_id : change.delete_keys) keys_.erase(key_id);
  for (const AliasEntry& a : change.put_aliases) aliases_[AliasStoreKey(a.owner, a.name)] = a;
  for (const std::string& name : deleted_aliases) aliases_.erase(name);
  return Status::Ok();
}

}  // namespace envelope::keyservice
