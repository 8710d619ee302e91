// The persistent metadata of one KMS key, stored as JSON in the LMDB "keys"
// database (docs/KEYSERVICE.md, "Store"). Key material is stored apart from
// it, sealed under the root key, one entry per version.
#ifndef ENVELOPE_KEYSERVICE_KEY_RECORD_H_
#define ENVELOPE_KEYSERVICE_KEY_RECORD_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/base/status.h"
#include "keyservice/grant.h"

namespace envelope::keyservice {

inline constexpr char kStateEnabled[] = "Enabled";
inline constexpr char kStateDisabled[] = "Disabled";
inline constexpr char kStatePendingDeletion[] = "PendingDeletion";
// An EXTERNAL key without material (docs/KEYSERVICE.md, "Imported key material").
inline constexpr char kStatePendingImport[] = "PendingImport";

// Where a key's material lives: sealed in the store (AWS_KMS), or on the
// PKCS#11 token of a custom key store, never leaving it (AWS_CLOUDHSM).
inline constexpr char kOriginAwsKms[] = "AWS_KMS";
inline constexpr char kOriginCloudHsm[] = "AWS_CLOUDHSM";
// Material the key's owner imported (ImportKeyMaterial).
inline constexpr char kOriginExternal[] = "EXTERNAL";

struct KeyVersionInfo {
  uint32_t number = 0;  // from 1
  int64_t created = 0;  // epoch seconds
  std::string rotation_type;  // "INITIAL", "AUTOMATIC" or "ON_DEMAND"
};

struct KeyRecord {
  std::string key_id;  // lower-case UUID
  std::string description;
  // Principal::OwnerId() of the caller that created the key: whose quota
  // its versions count against. Empty for keys made before it was recorded
  // (they count against nobody's quota).
  std::string creator;
  std::string key_state = kStateEnabled;
  std::string origin = kOriginAwsKms;
  // AWS's KeySpec and KeyUsage (key_spec.h). Keys other than
  // SYMMETRIC_DEFAULT have one version, as in AWS (no rotation).
  std::string key_spec = "SYMMETRIC_DEFAULT";
  std::string key_usage = "ENCRYPT_DECRYPT";
  bool symmetric() const { return key_spec == "SYMMETRIC_DEFAULT"; }
  // Set with origin AWS_CLOUDHSM: the custom key store whose token holds
  // every version (docs/KEYSERVICE.md, "Custom key stores").
  std::string custom_key_store_id;
  bool on_token() const { return origin == kOriginCloudHsm; }
  bool external() const { return origin == kOriginExternal; }
  // EXTERNAL keys: whether material is imported now (version 1's), the
  // SHA-256 (hex) of the first material imported (a re-import must bring
  // the same, as in AWS), and when it expires (epoch seconds; 0: never).
  bool material_imported = false;
  std::string import_digest;
  int64_t valid_to = 0;
  int64_t creation_date = 0;
  int64_t deletion_date = 0;  // set while PendingDeletion
  int pending_window_days = 0;
  // Set by DisableKey, so that CancelKeyDeletion can restore Disabled.
  bool enabled_flag = true;
  bool rotation_enabled = false;
  int rotation_period_days = 365;
  int64_t next_rotation_date = 0;
  std::string policy;  // JSON text, validated by KeyPolicy::Parse
  std::vector<std::pair<std::string, std::string>> tags;  // sorted by key
  std::vector<KeyVersionInfo> versions;  // every version ever made, ascending
  uint32_t current_version = 0;          // newest; the one that encrypts
  uint32_t min_version = 1;  // versions below were retired: material destroyed
  std::vector<Grant> grants;  // in creation order (grant.h)
  // Multi-Region keys (docs/KEYSERVICE.md, "Multi-Region keys"): the same
  // key id and material in other regions (other envelope-keyd daemons).
  // The primary rotates; replicas follow. Every copy knows the whole set.
  bool multi_region = false;
  std::string primary_region;
  std::vector<std::string> replica_regions;  // sorted
  bool is_replica(const std::string& own_region) const {
    return multi_region && primary_region != own_region;
  }

  // Versions whose material is retained (min_version..current_version).
  uint32_t retained_versions() const {
    return current_version >= min_version ? current_version - min_version + 1 : 0;
  }

  // The key ring's rules (AWS's key states). A rule that refuses is
  // FailedPrecondition (KMSInvalidStateException, the message following
  // the key's ARN) or InvalidArgument (ValidationException); a refused
  // change leaves the record as it was.
  Status SetEnabled(bool enabled);          // not while PendingDeletion
  Status SetDescription(std::string text);  // not while PendingDeletion
  // PendingDeletion for `days` from `now` (epoch seconds); not twice.
  Status ScheduleDeletion(int days, int64_t now);
  // Back from PendingDeletion, Disabled (as AWS).
  Status CancelDeletion();
  // Records version current_version + 1, made at `now`, and makes it the
  // one that encrypts. Returns its number. (Its material is the caller's.)
  uint32_t AddVersion(int64_t now, const std::string& rotation_type);
  // Retires every retained version below `below` (1..current_version):
  // from then on min_version is at least `below`. Returns the versions
  // retired now (their material is the caller's to destroy).
  StatusOr<std::vector<uint32_t>> Retire(uint32_t below);
  // Adds a validated grant: ResourceExhausted (LimitExceededException) past
  // kMaxGrantsPerKey, or kMaxGrantsPerGrantee for its grantee.
  Status AddGrant(Grant grant);
  // The grant with this id, or null.
  const Grant* FindGrant(std::string_view grant_id) const;
  // Removes it; NotFound if there is none.
  Status RemoveGrant(std::string_view grant_id);
  // Removes grants expired at `now`; returns how many.
  size_t RemoveExpiredGrants(int64_t now);

  std::string ToJson() const;
  static StatusOr<KeyRecord> FromJson(std::string_view text);
};

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_KEY_RECORD_H_
