// The AWS KMS JSON 1.1 operations, independent of transport: a request is
// (principal, X-Amz-Target, body) and the answer is (HTTP status, body).
// docs/KEYSERVICE.md lists the operations, the fields and the errors.
//
// Every request produces exactly one audit record, except ReEncryptBatch,
// which produces one per item (or one for the request, if it fails before
// its items). Mutations write it inside the store's transaction, before
// commit; reads and cryptographic operations write it before the response
// leaves. If the record cannot be written the request fails (fail closed).
//
// Thread safety: Handle() and RunScheduledWork() are thread-safe.
#ifndef ENVELOPE_KEYSERVICE_KMS_SERVICE_H_
#define ENVELOPE_KEYSERVICE_KMS_SERVICE_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/crypto/asymmetric.h"
#include "keyservice/audit_log.h"
#include "keyservice/ciphertext_blob.h"
#include "keyservice/custom_key_store.h"
#include "keyservice/key_store.h"
#include "keyservice/import_tokens.h"
#include "keyservice/key_usage.h"
#include "keyservice/kms_error.h"
#include "keyservice/kms_request.h"
#include "keyservice/principal.h"
#include "keyservice/rate_limiter.h"
#include "keyservice/region_peers.h"
#include "keyservice/root_key.h"

namespace envelope::keyservice {

// EnvelopeKeyService.GenerateDataKeys: encryption contexts per request.
inline constexpr size_t kMaxDataKeysPerRequest = 256;
// EnvelopeKeyService.ReEncryptBatch: items per request.
inline constexpr size_t kMaxReEncryptsPerRequest = 128;

struct KmsResponse {
  int http_status = 200;
  std::string body;
  // True if the body holds plaintext (key or data) and must be wiped after
  // it is sent.
  bool sensitive = false;
};

struct KmsServiceOptions {
  std::string region = "local";
  std::string account = "000000000000";
  // Added to the wall clock for scheduling decisions (rotation, deletion).
  // A testing aid: lets tests move a daemon days ahead without waiting.
  std::chrono::seconds clock_offset{0};
  // uid allowed to run the audit operations besides root (the daemon's own).
  uid_t admin_uid = 0;
  // Quotas per owner (Principal::OwnerId()), answered with
  // LimitExceededException: keys it created, and retained versions of
  // those keys. 0 means no limit.
  size_t max_keys_per_principal = 1000;
  size_t max_key_versions_per_principal = 10000;
  // The share of the secure heap (percent) that new key material may not
  // take: it stays free for the operations that serve existing keys (data
  // keys, decrypted plaintexts), so that no one creating keys can make
  // everyone's GenerateDataKey fail.
  unsigned secure_heap_reserve_percent = 25;
  // A stand-in for AWS KMS in tests (--standard-only): every
  // EnvelopeKeyService.* operation is answered as an unknown target is
  // (UnknownOperationException), and answers carry only members of AWS's
  // published output shapes (standard_api.h). Blobs do not change.
  bool standard_only = false;
  // Where the root key comes from, for RotateRootKey: the key file (key-file
  // mode), else the token's URI (pkcs11 mode), else a passphrase.
  std::string root_key_file;
  std::string root_key_uri;
  bool root_key_from_passphrase = false;
  // Where a RotateRootKey that changes the root key to a key file writes it:
  // the data directory's root.key, which a start without --root-key,
  // --root-key-file or --passphrase-* reads.
  std::string default_root_key_file;
  // Testing aid (ENVELOPE_TEST_ROTATE_ROOT_LATCH): a directory where
  // RotateRootKey stops at each step, creating STEP.reached and waiting for
  // STEP.go, so that a test can kill the daemon exactly there.
  std::string rotate_root_latch_dir;
  // The PKCS#11 tokens attached with --hsm-cluster, for custom key stores
  // (custom_key_store.h). Null: none (the operations still answer; every
  // cluster id is then unknown).
  std::shared_ptr<CustomKeyStores> custom_key_stores;
  // Multi-Region keys: the peers file (region_peers.h; "" for none), and
  // the principals of other regions' daemons allowed to push replicas here
  // (EnvelopeKeyService.ReplicaSync), as key-policy names ("key:NAME").
  std::string peers_file;
  std::vector<std::string> replication_principals;
  // Key pairs a principal may have made on request (GenerateDataKeyPair*,
  // GetParametersForImport): a burst, refilled per second
  // (ThrottlingException past it; rate_limiter.h).
  double key_pair_burst = 10;
  double key_pairs_per_second = 2;
};

// Whether `more_bytes` of new key material fit in the secure heap described
// by `usage` without eating into the reserve (`reserve_percent` of it).
// A heap that is not set up (size 0) is not limited here.
bool NewMaterialFits(const crypto::SecureHeapUsage& usage, size_t more_bytes,
                     unsigned reserve_percent);

class KmsService {
 public:
  // `store` and `audit` must outlive the service.
  KmsService(KeyStore* store, AuditLog* audit, KmsServiceOptions options);

  KmsResponse Handle(const Principal& who, std::string_view target, std::string_view body);

  // Records a request that never reached an operation because its
  // authentication failed (every request is audited, rejected ones too),
  // with the connection it came on.
  void AuditRejected(std::string_view target, const Origin& origin,
                     const std::string& error_type, const std::string& message);

  // Rotates keys whose automatic rotation is due and deletes keys whose
  // deletion window has passed. Called at start (catch-up) and periodically.
  void RunScheduledWork();

  int64_t Now() const;
  std::string KeyArn(const std::string& key_id) const;

  // The root key, kept (in the secure heap) for the Backup extension, which
  // seals it beside the store. Without it Backup answers that backups are
  // not available.
  void KeepRootKeyForBackups(crypto::SecretBytes root_key);

  // Loads the custom key stores' records and connects those that were
  // connected when the service last stopped (kms_custom_key_store_ops.cc).
  // Failures are the stores' states (FAILED), not errors; only a damaged
  // store is. REQUIRES: the store unlocked, before requests are served.
  Status StartCustomKeyStores();

  // Loads the keys' last uses and the tracking start (GetKeyLastUsage).
  // REQUIRES: the store unlocked, before requests are served.
  Status StartKeyUsage();
  // Writes the last uses noted since the previous call to the store (also
  // done by RunScheduledWork); call once more at shutdown.
  void FlushKeyUsage();
  // At start: every multi-Region primary with replicas is pushed to them
  // by the next scheduled work (a push a crash interrupted is made then).
  void MarkReplicasForSync();

  struct Call;  // one request in flight (kms_service.cc)

  // Every X-Amz-Target the service answers, from its routes: the same set
  // as kms::Operations() (OperationTableTest).
  static std::vector<std::string> HandledTargets();

 private:
  using Error = KmsError;  // kms_error.h
  using Outcome = std::variant<nlohmann::json, Error>;

  Outcome Dispatch(Call& call);
  // The handler of each row of kms::Operations() (kms_service.cc).
  struct Route {
    std::string_view name;
    bool extension;
    Outcome (*run)(KmsService&, Call&);
  };
  static std::span<const Route> Routes();

  // Key management (kms_key_ops.cc).
  Outcome CreateKey(Call& c);
  Outcome DescribeKey(Call& c);
  Outcome ListKeys(Call& c);
  Outcome CreateAlias(Call& c);
  Outcome UpdateAlias(Call& c);
  Outcome DeleteAlias(Call& c);
  Outcome ListAliases(Call& c);
  Outcome SetEnabled(Call& c, bool enabled);
  Outcome ScheduleKeyDeletion(Call& c);
  Outcome CancelKeyDeletion(Call& c);
  Outcome SetRotation(Call& c, bool enabled);
  Outcome GetKeyRotationStatus(Call& c);
  Outcome RotateKeyOnDemand(Call& c);
  // UnsupportedOperationException: asymmetric and HMAC keys do not rotate.
  Error NotRotatable(const KeyRecord& r) const;
  Outcome ListKeyRotations(Call& c);
  Outcome UpdateKeyDescription(Call& c);
  Outcome GetKeyLastUsage(Call& c);  // kms_key_usage_ops.cc
  // Notes a successful call's cryptographic use of its keys.
  void NoteUsage(const Call& c);
  // Key policies (kms_policy_ops.cc).
  Outcome GetKeyPolicy(Call& c);
  Outcome PutKeyPolicy(Call& c);
  Outcome ListKeyPolicies(Call& c);
  Outcome TagResource(Call& c);
  Outcome UntagResource(Call& c);
  Outcome ListResourceTags(Call& c);
  Outcome RetireKeyVersions(Call& c);
  // Grants (kms_grant_ops.cc; the grant itself is grant.h).
  Outcome CreateGrant(Call& c);
  Outcome ListGrants(Call& c);
  Outcome ListRetirableGrants(Call& c);
  Outcome RetireGrant(Call& c);
  Outcome RevokeGrant(Call& c);
  // InvalidGrantTokenException unless every GrantTokens entry of a request
  // is a token this service issued (checked for every operation).
  static std::optional<Error> CheckGrantTokens(const KmsRequest& req);
  // What the call says, for key-policy conditions.
  RequestFacts Facts(const Call& c, std::span<const EncryptionContext> contexts) const;
  // The first of the key's grants that lets the caller run `operation`
  // with `contexts` now, or null.
  const Grant* AllowingGrant(const Call& c, const KeyEntry& key, std::string_view operation,
                             std::span<const EncryptionContext> contexts) const;
  // Records in the call's audit facts that `g` authorised it.
  static void NoteGrantUsed(Call& c, const Grant& g);
  // RetireGrant's and RevokeGrant's common end: removes the grant once
  // `may_remove` agrees, committed with the audit record.
  Outcome RemoveGrant(
      Call& c, const std::string& ref, const std::string& grant_id,
      const std::function<std::optional<Error>(const KeyEntry&, const Grant&)>& may_remove);
  // Removes grants past their Expiry (scheduled work; each key's removal
  // audited as ExpireGrants). Expired grants allow nothing before that.
  void RemoveExpiredGrants();

  // Root or the daemon's own user, over the Unix socket: who may run the
  // audit and custody extensions (kms_audit_ops.cc).
  bool IsAdmin(const Call& c) const;

  // The audit extensions (kms_audit_ops.cc).
  Outcome VerifyAudit(Call& c);
  Outcome TailAudit(Call& c);

  // Custom key stores (kms_custom_key_store_ops.cc).
  Outcome CreateCustomKeyStore(Call& c);
  Outcome DescribeCustomKeyStores(Call& c);
  Outcome ConnectCustomKeyStore(Call& c);
  Outcome DisconnectCustomKeyStore(Call& c);
  Outcome DeleteCustomKeyStore(Call& c);
  Outcome UpdateCustomKeyStore(Call& c);
  // The records with `edit` applied, committed with the call's audit record
  // (and `change`'s other parts); then published to custom_key_stores_.
  // REQUIRES: the writer lock.
  std::optional<Error> CommitCustomKeyStores(Call& c, std::vector<CustomKeyStoreRecord> records,
                                             KeyStore::Change change);
  // The start of every operation on one named store: root only, its
  // CustomKeyStoreId (recorded for the audit), the store's writer lock, the
  // records and the one named (CustomKeyStoreNotFoundException if none),
  // into *edit.
  struct StoreEdit {
    std::unique_lock<std::mutex> lock;
    std::vector<CustomKeyStoreRecord> records;
    CustomKeyStoreRecord* record = nullptr;  // into `records`
    std::string id;
  };
  std::optional<Error> BeginStoreEdit(Call& c, StoreEdit* edit);
  // CustomKeyStoreInvalidStateException unless the store is DISCONNECTED
  // (what updating and deleting one want).
  std::optional<Error> RequireDisconnected(const std::string& store_id) const;
  // Destroys token keys after the versions' commit (retire, delete):
  // best effort, a failure is logged and leaves an unusable object.
  void DestroyTokenKeys(const KeyRecord& r, const std::vector<uint32_t>& versions) const;

  // The Backup extension (kms_backup_ops.cc).
  Outcome Backup(Call& c);
  // The RotateRootKey extension and its three kinds of new root key
  // (kms_rotate_root_ops.cc). REQUIRES (the three): the writer lock.
  Outcome RotateRootKey(Call& c);
  Outcome RotateToKeyFile(Call& c, const RootKeySource& to);
  Outcome RotateToPassphrase(Call& c, const RootKeySource& to);
  Outcome RotateToToken(Call& c, const RootKeySource& to);
  // Re-seals the store under `next` with the `meta` of the new root key
  // `to`, in one transaction, between the test latch's two steps; then
  // keeps `next` for backups and makes `to` the current root key.
  // REQUIRES: the writer lock.
  std::optional<Error> CommitNewRoot(crypto::SecretBytes next, const RootKeySource& to,
                                     std::vector<std::pair<std::string, std::string>> meta);
  // After a commit that changed the root key away from a key file: that
  // file opens nothing now and goes. REQUIRES: the writer lock.
  void RemoveOldKeyFile(const RootKeySource& from, const RootKeySource& to) const;

  // Cryptographic operations (kms_crypto_ops.cc).
  Outcome Encrypt(Call& c);
  Outcome Decrypt(Call& c);
  Outcome ReEncrypt(Call& c);
  Outcome GenerateDataKey(Call& c, bool with_plaintext);
  Outcome GenerateDataKeys(Call& c);
  Outcome GenerateRandom(Call& c);
  // Multi-Region keys (kms_region_ops.cc).
  Outcome ReplicateKey(Call& c);
  Outcome UpdatePrimaryRegion(Call& c);
  Outcome ReplicaSync(Call& c);  // extension: another region's daemon pushes a key
  // The ARN of `key_id` in `region`.
  std::string KeyArnIn(const std::string& region, const std::string& key_id) const;
  nlohmann::json MultiRegionConfiguration(const KeyRecord& r) const;
  // Pushes `entry` (record and retained material) to `region`. `create`:
  // the region may not have it yet; `policy`, `description`, `tags` are
  // then the replica's own.
  Status PushReplica(const std::string& region, const KeyRecord& r, const KeyEntry& entry,
                     bool create, const std::string& policy, const std::string& description,
                     const std::vector<std::pair<std::string, std::string>>& tags);
  // After a change of a primary's material or region set: pushes it to
  // every replica; a replica that cannot be reached is retried by the
  // scheduled work (replicas_pending_).
  void SyncReplicas(const std::string& key_id);
  void RetryPendingReplicas();
  // UnsupportedOperationException for an operation only the primary does.
  std::optional<Error> RequirePrimary(const KeyRecord& r, std::string_view what) const;
  // Imported key material (kms_import_ops.cc).
  Outcome GetParametersForImport(Call& c);
  Outcome ImportKeyMaterial(Call& c);
  Outcome DeleteImportedKeyMaterial(Call& c);
  static void DropImportedMaterial(KeyRecord* r, KeyStore::Change* change);
  // Scheduled work: material past its ValidTo is deleted (the key waits for
  // an import again); RequireUsable refuses it from ValidTo on.
  void ExpireImportedMaterial();
  // Asymmetric and HMAC keys (kms_asymmetric_ops.cc; key_spec.h).
  Outcome Sign(Call& c);
  Outcome Verify(Call& c);
  Outcome GetPublicKey(Call& c);
  Outcome GenerateMac(Call& c);
  Outcome VerifyMac(Call& c);
  Outcome DeriveSharedSecret(Call& c);
  Outcome GenerateDataKeyPair(Call& c, bool with_plaintext);
  // Encrypt and Decrypt with an RSAES_* algorithm: RSA-OAEP under an RSA
  // ENCRYPT_DECRYPT key, the ciphertext raw (no blob), as AWS.
  Outcome EncryptAsymmetric(Call& c, const std::string& key_ref, ByteView plaintext);
  Outcome DecryptAsymmetric(Call& c, const std::string& key_ref, ByteView ciphertext);
  // The key `ref` names (aliases allowed), authorised for `action`, usable,
  // of KeyUsage `usage` (InvalidKeyUsageException otherwise), with the
  // material of its one version.
  struct UsableKey {
    std::shared_ptr<const KeyEntry> key;
    std::shared_ptr<const crypto::SecretBytes> material;
  };
  std::variant<UsableKey, Error> KeyForUse(Call& c, const std::string& ref,
                                           std::string_view action, std::string_view usage);
  // Sign and Verify, GenerateMac and VerifyMac: the request read, the key
  // found, authorised for `action` and checked to offer the algorithm.
  struct Signing {
    UsableKey key;
    std::string algorithm;
    crypto::SignaturePadding padding;
    crypto::Hash hash;
    Bytes message;
    Bytes digest;  // what is signed: the message hashed, or as given (DIGEST)
  };
  std::variant<Signing, Error> PrepareSigning(Call& c, std::string_view action);
  struct Macing {
    UsableKey key;
    std::string algorithm;
    crypto::Hash hash;
    Bytes message;
  };
  std::variant<Macing, Error> PrepareMac(Call& c, std::string_view action);
  // Encrypt and Decrypt with RSAES_*: the algorithm, the key (an RSA key
  // for ENCRYPT_DECRYPT, named: its ciphertext does not name it) and no
  // encryption context.
  struct RsaUse {
    UsableKey key;
    std::string algorithm;
    crypto::Hash hash;
  };
  std::variant<RsaUse, Error> PrepareRsa(Call& c, const std::string& ref,
                                         std::string_view action);
  // InvalidKeyUsageException for a key that is not SYMMETRIC_DEFAULT.
  std::optional<Error> RequireSymmetric(const KeyEntry& key) const;
  // The batch extension (kms_batch_ops.cc).
  Outcome ReEncryptBatch(Call& c);

  // The key that seals new blobs for a request: resolved (aliases allowed),
  // authorised for the action, usable, at its newest version (recorded in
  // the call for the audit).
  struct SealingKey {
    std::shared_ptr<const KeyEntry> key;
    uint32_t version = 0;
    KeyIdBytes id{};
    // Made at the first Seal and kept for the rest of the call (a batch of
    // data keys seals under one expanded key).
    std::shared_ptr<BlobSealer> sealer;
    // Keys in a custom key store seal on its token.
    CustomKeyStores* token_stores = nullptr;
    StatusOr<Bytes> Seal(const EncryptionContext& context, ByteView plaintext);
  };
  // The answer to a failed SealingKey::Seal: KMSInvalidStateException when
  // the key's custom key store went away meanwhile, else KMSInternalException.
  static Error SealError(const Status& s);
  std::variant<SealingKey, Error> KeyForSealing(Call& c, const std::string& key_ref,
                                                std::string_view action,
                                                std::span<const EncryptionContext> contexts) const;

  struct OpenedBlob {
    std::shared_ptr<const KeyEntry> key;
    crypto::SecretBytes plaintext;
  };
  // Decrypt and ReEncrypt: finds the blob's key and version (recording them
  // for the audit), checks that `expected_ref` (if non-empty) names that
  // key, authorizes `action`, checks the key's state and the version's
  // retirement, and opens the blob under `context`.
  std::variant<OpenedBlob, Error> OpenCiphertext(Call& c, ByteView blob,
                                                 const std::string& expected_ref,
                                                 std::string_view action,
                                                 const EncryptionContext& context);

  // The answer to a key-ring rule that refused (KeyRecord's methods):
  // FailedPrecondition is KMSInvalidStateException ("ARN " + message),
  // InvalidArgument a ValidationException; nullopt for Ok.
  std::optional<Error> RuleError(const KeyRecord& r, const Status& s) const;
  using KeyEdit = std::function<std::optional<Error>(KeyRecord& record, KeyStore::Change& change,
                                                     const KeyEntry& current)>;
  std::variant<KeyRecord, Error> MutateKey(Call& c, std::string_view action, const KeyEdit& edit);

  // Helpers (kms_service.cc).
  std::shared_ptr<const KeyEntry> Resolve(Call& c, const std::string& key_ref, bool aliases_ok,
                                          std::optional<Error>* error) const;
  // The key policy, then the key's grants (an explicit Deny in the policy
  // wins over both). `contexts`: every encryption context the request uses
  // with this key, for grant constraints; empty for operations without one.
  std::optional<Error> Authorize(Call& c, const KeyEntry& key, std::string_view action,
                                 std::span<const EncryptionContext> contexts = {}) const;
  std::optional<Error> RequireUsable(const KeyEntry& key) const;
  nlohmann::json KeyMetadata(const KeyRecord& r) const;
  // The algorithm lists of the key's spec and usage (KeyMetadata,
  // GetPublicKey).
  static void AddAlgorithms(const KeyRecord& r, nlohmann::json* out);
  // Commits `change` with the call's audit record written inside the
  // transaction; maps failures to KMSInternalException.
  std::optional<Error> CommitWithAudit(Call& c, const KeyStore::Change& change);
  Status AppendAudit(Call& c, const Error* error);
  // The record AppendAudit writes, without writing it: the caller's part
  // (principal, connection, operation) and then the request's facts (key,
  // context, extras, result).
  nlohmann::ordered_json AuditRecord(const Call& c, const Error* error) const;
  nlohmann::ordered_json AuditCaller(const Call& c) const;
  nlohmann::ordered_json AuditFacts(const Call& c, const Error* error) const;

  // New key material and its limits (kms_limits.cc).
  // Makes the material of a new version. ResourceExhausted if it would eat
  // into the secure heap's reserve (the one place that check is made).
  Status AddVersion(KeyRecord* record, KeyStore::Change* change, const char* rotation_type);
  // REQUIRES: the writer lock. LimitExceededException if `owner` may not
  // have `new_keys` more keys and `new_versions` more retained versions.
  std::optional<Error> CheckQuota(const std::string& owner, size_t new_keys,
                                  size_t new_versions) const;
  // The answer to a failed AddVersion.
  static Error NewMaterialError(const Status& s);

  KeyStore* const store_;
  AuditLog* const audit_;
  const KmsServiceOptions options_;
  // Set at start, before requests are served; afterwards read and replaced
  // only under the store's writer lock (Backup, RotateRootKey).
  std::unique_ptr<crypto::SecretBytes> root_key_;
  // The root key's kind and place as the store opens now: from the options
  // at start (none: no rotatable root key), changed by RotateRootKey.
  // Guarded by the store's writer lock.
  std::optional<RootKeySource> root_source_;
  // Never null (an empty set when the options gave none).
  const std::shared_ptr<CustomKeyStores> custom_key_stores_;
  KeyUsageTracker usage_;
  ImportTokens import_tokens_;
  const RegionPeers peers_;
  RateLimiter key_pair_limiter_;
  // ThrottlingException once the caller's key pairs are used up.
  std::optional<Error> ThrottleKeyPairs(const Call& c);
  std::mutex replicas_mu_;
  std::set<std::string> replicas_pending_;  // key ids; guarded by replicas_mu_
  // Set by StartKeyUsage, before requests are served; read-only after.
  int64_t tracking_start_ = 0;
};

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_KMS_SERVICE_H_
