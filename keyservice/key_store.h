// The key service's state: keys, their sealed key material per version,
// aliases and a little metadata, in one LMDB environment (the only file
// that includes lmdb.h is key_store.cc).
//
// Every change is one LMDB write transaction, so kill -9 at any moment
// leaves either all of a change or none of it. The whole state is also held
// in memory, decrypted material in SecretBytes, so the hot path (Decrypt,
// GenerateDataKey) takes no LMDB transaction at all.
//
// Thread safety: all methods are thread-safe. Readers get immutable
// snapshots (shared_ptr<const KeyEntry>). Writers serialise on the writer
// mutex: take LockForWrite(), read the current state, build a Change, then
// Commit() while still holding the lock, so read-modify-write is atomic.
// Lock order: writer mutex, then the internal state mutex.
#ifndef ENVELOPE_KEYSERVICE_KEY_STORE_H_
#define ENVELOPE_KEYSERVICE_KEY_STORE_H_

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"
#include "keyservice/key_policy.h"
#include "keyservice/key_record.h"

namespace envelope::keyservice {

struct KeyEntry {
  KeyRecord record;
  KeyPolicy policy;
  // Decrypted material of every retained version.
  std::map<uint32_t, std::shared_ptr<const crypto::SecretBytes>> materials;
};

// Aliases are per principal (docs/KEYSERVICE.md, "Aliases"): `alias/home`
// of uid 1000 and `alias/home` of uid 65534 are different aliases, and a
// caller's `alias/NAME` resolves only in its own namespace.
struct AliasEntry {
  std::string name;  // "alias/..."
  std::string key_id;
  int64_t creation_date = 0;
  // Principal::OwnerId() of the namespace. Empty for an alias made before
  // namespaces existed: listed, deletable by the key's administrators, but
  // resolved for nobody.
  std::string owner;
};

// The LMDB (and in-memory) key of an alias: "OWNER|alias/NAME" ('|' cannot
// occur in an alias name), or the bare name for an ownerless legacy alias.
std::string AliasStoreKey(const std::string& owner, const std::string& name);

class KeyStore {
 public:
  // A pending change, applied atomically by Commit().
  struct Change {
    std::vector<KeyRecord> put_records;
    // New material: (key id, version, material). Sealed under the root key.
    std::vector<std::tuple<std::string, uint32_t, std::shared_ptr<const crypto::SecretBytes>>>
        put_materials;
    // Destroyed material (retire): removed from LMDB and from memory.
    std::vector<std::pair<std::string, uint32_t>> delete_materials;
    // Keys deleted for good, with all their material and aliases.
    std::vector<std::string> delete_keys;
    std::vector<AliasEntry> put_aliases;
    std::vector<AliasEntry> delete_aliases;  // by owner and name
    // Meta values set (name, value) and removed.
    std::vector<std::pair<std::string, std::string>> put_meta;
    std::vector<std::string> delete_meta;
    // Kept secrets (KeptSecret) set or replaced, sealed under the KEK, and
    // removed.
    std::vector<std::pair<std::string, std::shared_ptr<const crypto::SecretBytes>>> put_secrets;
    std::vector<std::string> delete_secrets;
  };

  ~KeyStore();

  // Opens (creating if needed) the LMDB environment in `dir`. The state is
  // not readable until Unlock().
  static StatusOr<std::unique_ptr<KeyStore>> Open(const std::string& dir);

  // Returns the value of meta key `name`, creating it with `init()` in its
  // own transaction if absent (used for the scrypt salt before unlocking).
  StatusOr<std::string> GetOrCreateMeta(const std::string& name,
                                        const std::function<std::string()>& init);
  Status PutMeta(const std::string& name, const std::string& value);
  // A consistent copy of the whole environment as of one read transaction
  // (LMDB's compacting copy, mdb_env_copyfd2 with MDB_CP_COMPACT): the
  // contents of a data.mdb that opens on its own. Taken while the service
  // runs; writers are not blocked.
  StatusOr<std::string> Snapshot();
  StatusOr<std::optional<std::string>> GetMeta(const std::string& name);

  // A secret kept in the store, sealed under the KEK (meta "sealed:NAME"),
  // made by `make` the first time and kept from then on: it outlives a
  // change of root key (the audit log's MAC key). REQUIRES: unlocked.
  StatusOr<crypto::SecretBytes> KeptSecret(
      const std::string& name, const std::function<StatusOr<crypto::SecretBytes>()>& make);

  // The kept secret `name` if there is one. REQUIRES: unlocked.
  StatusOr<std::optional<crypto::SecretBytes>> GetSecret(const std::string& name);

  // Re-seals every key version's material and every kept secret under the
  // KEK of `new_root`, and writes a new check value, in one write
  // transaction: afterwards the store opens with `new_root` only, and kill
  // -9 at any moment leaves it opening with the old root key or the new
  // one. `before_commit` runs inside the transaction once all is staged;
  // if it fails nothing changes. REQUIRES: LockForWrite() held; unlocked.
  // `put_meta` (the new scrypt salt, the newly sealed root key of a token,
  // the root key's kind) is written and `delete_meta` (what the old kind
  // kept) deleted in the same transaction.
  Status RotateRoot(const crypto::SecretBytes& new_root,
                    const std::function<Status()>& before_commit,
                    const std::vector<std::pair<std::string, std::string>>& put_meta = {},
                    const std::vector<std::string>& delete_meta = {});

  // Whether `root_key` matches the stored check value (false when there is
  // none yet), without unlocking anything.
  StatusOr<bool> OpensWith(const crypto::SecretBytes& root_key);

  // Checks `root_key` against the stored check value (creating it on first
  // use) and loads and decrypts every key. FailedPrecondition if the root
  // key is wrong.
  Status Unlock(const crypto::SecretBytes& root_key);

  std::shared_ptr<const KeyEntry> FindKey(const std::string& key_id) const;
  std::optional<AliasEntry> FindAlias(const std::string& owner, const std::string& name) const;
  std::vector<std::shared_ptr<const KeyEntry>> AllKeys() const;  // by key id
  std::vector<AliasEntry> AllAliases() const;  // every namespace, by owner then name

  std::unique_lock<std::mutex> LockForWrite() {
    return std::unique_lock<std::mutex>(writer_mu_);
  }
  // REQUIRES: the caller holds LockForWrite(). `before_commit` runs inside
  // the write transaction after the change is staged; if it fails (the audit
  // record could not be written) the transaction is aborted and nothing
  // changes.
  Status Commit(const Change& change, const std::function<Status()>& before_commit);

 private:
  struct Lmdb;
  explicit KeyStore(std::unique_ptr<Lmdb> lmdb);
  Status LoadAll();

  std::unique_ptr<Lmdb> lmdb_;
  std::unique_ptr<crypto::SecretBytes> kek_;  // material-sealing key

  std::mutex writer_mu_;
  mutable std::shared_mutex state_mu_;  // guards keys_ and aliases_
  std::map<std::string, std::shared_ptr<const KeyEntry>> keys_;
  std::map<std::string, AliasEntry> aliases_;
};

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_KEY_STORE_H_
