// Keys: create, describe, list, enable and disable, deletion, rotation,
// the RetireKeyVersions extension, and the scheduled work (automatic
// rotation, deletion). Aliases: kms_alias_ops.cc; tags: kms_tag_ops.cc;
// policies: kms_policy_ops.cc; grants: kms_grant_ops.cc.
#include <algorithm>

#include "core/base/uuid.h"
#include "core/base/base64.h"
#include "core/crypto/random.h"
#include "keyservice/key_spec.h"
#include "keyservice/kms_call.h"
#include "keyservice/kms_paginate.h"

namespace envelope::keyservice {

using json = nlohmann::json;


namespace {

constexpr int64_t kSecondsPerDay = 86400;

std::string NewKeyId() {
  KeyIdBytes id;
  (void)crypto::RandomBytes(id);
  return FormatRandomUuid(id);  // version 4
}


}  // namespace

KmsService::Outcome KmsService::CreateKey(Call& c) {
  std::string policy_text, description, usage, spec, cmk_spec, origin, store_id;
  bool bypass = false, multi_region = false;
  KeyRecord r;
  KMS_TRY(c.req.String("Policy", false, &policy_text));
  KMS_TRY(c.req.String("Description", false, &description));
  KMS_TRY(c.req.String("KeyUsage", false, &usage));
  KMS_TRY(c.req.String("KeySpec", false, &spec));
  KMS_TRY(c.req.String("CustomerMasterKeySpec", false, &cmk_spec));
  KMS_TRY(c.req.String("Origin", false, &origin));
  KMS_TRY(c.req.String("CustomKeyStoreId", false, &store_id));
  KMS_TRY(c.req.Bool("BypassPolicyLockoutSafetyCheck", &bypass));
  KMS_TRY(c.req.Bool("MultiRegion", &multi_region));
  KMS_TRY(c.req.Tags("Tags", false, &r.tags));
  if (description.size() > 8192) {
    return Error{"ValidationException", "Description is longer than 8192 characters"};
  }
  // KeySpec (or its old name CustomerMasterKeySpec) and KeyUsage, as AWS.
  if (!spec.empty() && !cmk_spec.empty() && spec != cmk_spec) {
    return Error{"ValidationException", "KeySpec and CustomerMasterKeySpec differ"};
  }
  if (spec.empty()) spec = cmk_spec.empty() ? kSpecSymmetric : cmk_spec;
  const KeySpec* key_spec = FindKeySpec(spec);
  if (key_spec == nullptr) {
    return KmsRequest::Invalid(
        "KeySpec", "Member must satisfy enum value set: [SYMMETRIC_DEFAULT, RSA_2048, RSA_3072, "
                   "RSA_4096, ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521, ECC_SECG_P256K1, "
                   "HMAC_224, HMAC_256, HMAC_384, HMAC_512] (SM2 is not supported)");
  }
  if (usage.empty()) usage = kUsageEncrypt;
  if (std::find(key_spec->usages.begin(), key_spec->usages.end(), usage) ==
      key_spec->usages.end()) {
    return Error{"ValidationException",
                 "KeyUsage " + usage + " is not valid for KeySpec " + spec};
  }
  r.key_spec = spec;
  r.key_usage = usage;
  if (!r.symmetric() && (origin == kOriginCloudHsm || c.req.Has("CustomKeyStoreId"))) {
    return Error{"UnsupportedOperationException",
                 "keys in a custom key store are symmetric (SYMMETRIC_DEFAULT), as in AWS"};
  }
  if (!origin.empty() && origin != kOriginAwsKms && origin != kOriginCloudHsm &&
      origin != kOriginExternal) {
    return Error{"UnsupportedOperationException",
                 "only Origin AWS_KMS, AWS_CLOUDHSM and EXTERNAL are supported"};
  }
  if (origin == kOriginExternal) {
    if (!r.symmetric()) {
      return Error{"UnsupportedOperationException",
                   "imported key material is supported for SYMMETRIC_DEFAULT keys only here"};
    }
    r.origin = kOriginExternal;
    r.key_state = kStatePendingImport;
    r.enabled_flag = false;
  }
  if ((origin == kOriginCloudHsm) != c.req.Has("CustomKeyStoreId")) {
    return Error{"ValidationException",
                 "Origin AWS_CLOUDHSM and CustomKeyStoreId go together: a key in a custom "
                 "key store names both"};
  }
  if (origin == kOriginCloudHsm) {
    if (!custom_key_stores_->Find(store_id)) {
      return Error{"CustomKeyStoreNotFoundException",
                   "custom key store " + store_id + " does not exist"};
    }
    if (!custom_key_stores_->Connected(store_id)) {
      return Error{"CustomKeyStoreInvalidStateException",
                   "custom key store " + store_id + " is " +
                       custom_key_stores_->StateOf(store_id).connection +
                       ": connect it first (ConnectCustomKeyStore)"};
    }
    r.origin = kOriginCloudHsm;
    r.custom_key_store_id = store_id;
  }
  if (multi_region) {
    if (r.on_token() || r.external()) {
      return Error{"UnsupportedOperationException",
                   "multi-Region keys here have their material made here (Origin AWS_KMS)"};
    }
    r.multi_region = true;
    r.primary_region = options_.region;
  }
  r.key_id = NewKeyId();
  r.creator = c.who.OwnerId();
  const bool custom_policy = c.req.Has("Policy");
  r.policy = custom_policy ? policy_text : KeyPolicy::DefaultFor(c.who);
  auto policy = KeyPolicy::Parse(r.policy);
  if (!policy.ok()) return Error{"MalformedPolicyDocumentException", policy.status().message()};
  if (custom_policy && !bypass && !policy->Allows(c.who, "kms:PutKeyPolicy", KeyArn(r.key_id))) {
    return Error{"MalformedPolicyDocumentException",
                 "The new key policy will not allow you to update the key policy in the future."};
  }
  std::sort(r.tags.begin(), r.tags.end());
  r.description = description;
  r.creation_date = Now();
  c.key_id = r.key_id;
  KeyStore::Change change;
  auto lock = store_->LockForWrite();
  KMS_TRY(CheckQuota(r.creator, 1, 1));
  if (!r.external()) {  // an EXTERNAL key's version 1 comes with ImportKeyMaterial
    Status s = AddVersion(&r, &change, "INITIAL");
    if (!s.ok()) return NewMaterialError(s);
    c.key_version = r.current_version;
  }
  change.put_records.push_back(r);
  KMS_TRY(CommitWithAudit(c, change));
  return json{{"KeyMetadata", KeyMetadata(r)}};
}

KmsService::Outcome KmsService::DescribeKey(Call& c) {
  std::string ref;
  KMS_TRY(c.req.String("KeyId", true, &ref));
  std::optional<Error> err;
  auto key = Resolve(c, ref, true, &err);
  KMS_TRY(err);
  KMS_TRY(Authorize(c, *key, "kms:DescribeKey"));
  return json{{"KeyMetadata", KeyMetadata(key->record)}};
}

KmsService::Outcome KmsService::UpdateKeyDescription(Call& c) {
  std::string description;
  KMS_TRY(c.req.String("Description", true, &description));
  if (description.size() > 8192) {
    return Error{"ValidationException", "Description is longer than 8192 characters"};
  }
  auto mutated = MutateKey(
      c, "kms:UpdateKeyDescription",
      [&]([[maybe_unused]] KeyRecord& r, [[maybe_unused]] KeyStore::Change& change,
          [[maybe_unused]] const KeyEntry& current) -> std::optional<Error> {
    return RuleError(r, r.SetDescription(description));
  });
  if (auto* e = std::get_if<Error>(&mutated)) return *e;
  return json::object();
}

KmsService::Outcome KmsService::ListKeys(Call& c) {
  auto keys = store_->AllKeys();
  bool truncated = false;
  std::string marker;
  KMS_TRY(Paginate(c.req, &keys, [](const auto& k) { return k->record.key_id; },
                   &truncated, &marker));
  json list = json::array();
  for (const auto& k : keys) {
    list.push_back({{"KeyId", k->record.key_id}, {"KeyArn", KeyArn(k->record.key_id)}});
  }
  return PageFields(json{{"Keys", list}}, truncated, marker);
}

// record (and stage material changes), then commit with the audit record.
std::variant<KeyRecord, KmsService::Error> KmsService::MutateKey(Call& c,
                                                                 std::string_view action,
                                                                 const KeyEdit& edit) {
  std::string ref;
  KMS_TRY(c.req.String("KeyId", true, &ref));
  auto lock = store_->LockForWrite();
  std::optional<Error> err;
  auto key = Resolve(c, ref, false, &err);
  KMS_TRY(err);
  KMS_TRY(Authorize(c, *key, action));
  KeyRecord r = key->record;
  KeyStore::Change change;
  KMS_TRY(edit(r, change, *key));
  change.put_records.push_back(r);
  KMS_TRY(CommitWithAudit(c, change));
  return r;
}

KmsService::Outcome KmsService::SetEnabled(Call& c, bool enabled) {
  auto mutated = MutateKey(
      c, enabled ? "kms:EnableKey" : "kms:DisableKey",
      [&]([[maybe_unused]] KeyRecord& r, [[maybe_unused]] KeyStore::Change& change,
          [[maybe_unused]] const KeyEntry& current) -> std::optional<Error> {
    return RuleError(r, r.SetEnabled(enabled));
  });
  if (auto* e = std::get_if<Error>(&mutated)) return *e;
  return json::object();
}

KmsService::Outcome KmsService::ScheduleKeyDeletion(Call& c) {
  int64_t days = 30;
  KMS_TRY(c.req.Int("PendingWindowInDays", false, &days));
  if (days < 7 || days > 30) {
    return Error{"ValidationException",
                 "1 validation error detected: Value '" + std::to_string(days) +
                     "' at 'pendingWindowInDays' failed to satisfy constraint: Member must have "
                     "value between 7 and 30"};
  }
  c.pending_window_days = days;
  auto mutated = MutateKey(
      c, "kms:ScheduleKeyDeletion",
      [&]([[maybe_unused]] KeyRecord& r, [[maybe_unused]] KeyStore::Change& change,
          [[maybe_unused]] const KeyEntry& current) -> std::optional<Error> {
    if (r.multi_region && !r.is_replica(options_.region) && !r.replica_regions.empty()) {
      return Error{"KMSInvalidStateException",
                   KeyArn(r.key_id) + " is the primary of replicas in other regions: delete "
                                      "them first, or make one of them the primary "
                                      "(UpdatePrimaryRegion)"};
    }
    return RuleError(r, r.ScheduleDeletion(static_cast<int>(days), Now()));
  });
  if (auto* e = std::get_if<Error>(&mutated)) return *e;
  const KeyRecord& r = std::get<KeyRecord>(mutated);
  return json{{"KeyId", KeyArn(r.key_id)},
              {"DeletionDate", r.deletion_date},
              {"KeyState", r.key_state},
              {"PendingWindowInDays", r.pending_window_days}};
}

KmsService::Outcome KmsService::CancelKeyDeletion(Call& c) {
  auto mutated = MutateKey(
      c, "kms:CancelKeyDeletion",
      [&]([[maybe_unused]] KeyRecord& r, [[maybe_unused]] KeyStore::Change& change,
          [[maybe_unused]] const KeyEntry& current) -> std::optional<Error> {
    // As in AWS KMS: a key whose deletion is cancelled comes back disabled.
    return RuleError(r, r.CancelDeletion());
  });
  if (auto* e = std::get_if<Error>(&mutated)) return *e;
  const KeyRecord& r = std::get<KeyRecord>(mutated);
  return json{{"KeyId", KeyArn(r.key_id)}};
}

KmsService::Outcome KmsService::SetRotation(Call& c, bool enabled) {
  int64_t period = 365;
  KMS_TRY(c.req.Int("RotationPeriodInDays", false, &period));
  if (enabled && (period < 90 || period > 2560)) {
    return Error{"ValidationException",
                 "1 validation error detected: Value at 'rotationPeriodInDays' failed to "
                 "satisfy constraint: Member must have value between 90 and 2560"};
  }
  if (enabled) c.rotation_period_days = period;
  auto mutated = MutateKey(
      c, enabled ? "kms:EnableKeyRotation" : "kms:DisableKeyRotation",
      [&]([[maybe_unused]] KeyRecord& r, [[maybe_unused]] KeyStore::Change& change,
          [[maybe_unused]] const KeyEntry& current) -> std::optional<Error> {
    if (r.key_state != kStateEnabled) {
      return Error{r.key_state == kStateDisabled ? "DisabledException" : "KMSInvalidStateException",
                   KeyArn(r.key_id) + " is " + r.key_state + "."};
    }
    if (enabled && (!r.symmetric() || r.external())) return NotRotatable(r);
    KMS_TRY(RequirePrimary(r, "set its rotation"));
    r.rotation_enabled = enabled;
    if (enabled) {
      r.rotation_period_days = static_cast<int>(period);
      r.next_rotation_date = Now() + period * kSecondsPerDay;
    } else {
      r.next_rotation_date = 0;
    }
    return std::nullopt;
  });
  if (auto* e = std::get_if<Error>(&mutated)) return *e;
  return json::object();
}

KmsService::Outcome KmsService::GetKeyRotationStatus(Call& c) {
  std::string ref;
  KMS_TRY(c.req.String("KeyId", true, &ref));
  std::optional<Error> err;
  auto key = Resolve(c, ref, false, &err);
  KMS_TRY(err);
  KMS_TRY(Authorize(c, *key, "kms:GetKeyRotationStatus"));
  const KeyRecord& r = key->record;
  json out = {{"KeyRotationEnabled", r.rotation_enabled}, {"KeyId", KeyArn(r.key_id)}};
  if (r.rotation_enabled) {
    out["RotationPeriodInDays"] = r.rotation_period_days;
    out["NextRotationDate"] = r.next_rotation_date;
  }
  return out;
}

KmsService::Error KmsService::NotRotatable(const KeyRecord& r) const {
  if (r.external()) {
    return Error{"UnsupportedOperationException",
                 KeyArn(r.key_id) + " has imported key material: import new material into a "
                                    "new key instead (rotation makes material here)"};
  }
  return Error{"UnsupportedOperationException",
               KeyArn(r.key_id) + " is a " + r.key_spec +
                   " key: only symmetric encryption keys rotate (as in AWS)"};
}

KmsService::Outcome KmsService::RotateKeyOnDemand(Call& c) {
  auto mutated = MutateKey(
      c, "kms:RotateKeyOnDemand",
      [&]([[maybe_unused]] KeyRecord& r, [[maybe_unused]] KeyStore::Change& change,
          [[maybe_unused]] const KeyEntry& current) -> std::optional<Error> {
    KMS_TRY(RequireUsable(current));
    if (!r.symmetric() || r.external()) return NotRotatable(r);
    KMS_TRY(RequirePrimary(r, "rotate it"));
    // Counted against the key's creator, whose key it is, whoever rotates.
    KMS_TRY(CheckQuota(r.creator, 0, 1));
    Status s = AddVersion(&r, &change, "ON_DEMAND");
    if (!s.ok()) return NewMaterialError(s);
    c.key_version = r.current_version;
    return std::nullopt;
  });
  if (auto* e = std::get_if<Error>(&mutated)) return *e;
  const KeyRecord& r = std::get<KeyRecord>(mutated);
  SyncReplicas(r.key_id);
  return json{{"KeyId", r.key_id}};
}

KmsService::Outcome KmsService::ListKeyRotations(Call& c) {
  std::string ref;
  KMS_TRY(c.req.String("KeyId", true, &ref));
  std::optional<Error> err;
  auto key = Resolve(c, ref, false, &err);
  KMS_TRY(err);
  KMS_TRY(Authorize(c, *key, "kms:ListKeyRotations"));
  std::vector<KeyVersionInfo> rotations;
  for (const auto& v : key->record.versions) {
    if (v.number > 1) rotations.push_back(v);
  }
  bool truncated = false;
  std::string marker;
  // Zero-padded so that string order is numeric order.
  auto key_of = [](const KeyVersionInfo& v) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "%010u", v.number);
    return std::string(buf);
  };
  KMS_TRY(Paginate(c.req, &rotations, key_of, &truncated, &marker));
  json list = json::array();
  for (const auto& v : rotations) {
    list.push_back({{"KeyId", key->record.key_id},
                    {"RotationDate", v.created},
                    {"RotationType", v.rotation_type},
                    // Extensions: which version the rotation made, and
                    // whether its material has since been retired.
                    {"KeyVersion", v.number},
                    {"Retired", v.number < key->record.min_version}});
  }
  return PageFields(json{{"Rotations", list}}, truncated, marker);
}

// Extension: destroy the material of every version below BelowVersion, like
// Vault transit's min_decryption_version followed by trim. Irreversible.
KmsService::Outcome KmsService::RetireKeyVersions(Call& c) {
  int64_t below = 0;
  KMS_TRY(c.req.Int("BelowVersion", true, &below));
  std::vector<uint32_t> retired;
  auto mutated = MutateKey(
      c, "kms:RetireKeyVersions",
      [&]([[maybe_unused]] KeyRecord& r, [[maybe_unused]] KeyStore::Change& change,
          [[maybe_unused]] const KeyEntry& current) -> std::optional<Error> {
    KMS_TRY(RequirePrimary(r, "retire its versions"));
    auto done = r.Retire(below < 1 || below > UINT32_MAX ? 0 : static_cast<uint32_t>(below));
    if (!done.ok()) return RuleError(r, done.status());
    retired = std::move(*done);
    for (uint32_t v : retired) change.delete_materials.emplace_back(r.key_id, v);
    c.extra["retired_versions"] = retired;
    return std::nullopt;
  });
  if (auto* e = std::get_if<Error>(&mutated)) return *e;
  const KeyRecord& r = std::get<KeyRecord>(mutated);
  if (r.on_token()) DestroyTokenKeys(r, retired);
  SyncReplicas(r.key_id);
  return json{{"KeyId", KeyArn(r.key_id)},
              {"MinKeyVersion", r.min_version},
              {"RetiredVersions", retired}};
}

void KmsService::RunScheduledWork() {
  Principal service;
  service.kind = Principal::Kind::kService;
  const int64_t now = Now();
  for (const auto& entry : store_->AllKeys()) {
    const KeyRecord& snapshot = entry->record;
    const bool delete_due =
        snapshot.key_state == kStatePendingDeletion && now >= snapshot.deletion_date;
    // A replica's schedule is its primary's, which pushes each rotation.
    const bool rotate_due = snapshot.rotation_enabled && snapshot.key_state == kStateEnabled &&
                            !snapshot.is_replica(options_.region) &&
                            now >= snapshot.next_rotation_date;
    if (!delete_due && !rotate_due) continue;
    auto lock = store_->LockForWrite();
    auto current = store_->FindKey(snapshot.key_id);
    if (!current) continue;
    Call c(service);
    c.key_id = snapshot.key_id;
    KeyStore::Change change;
    if (delete_due && current->record.key_state == kStatePendingDeletion) {
      c.op = "DeleteKey";
      change.delete_keys.push_back(snapshot.key_id);
    } else if (rotate_due && current->record.rotation_enabled) {
      c.op = "RotateKey";
      c.extra["rotation_type"] = "AUTOMATIC";
      KeyRecord r = current->record;
      Status added = AddVersion(&r, &change, "AUTOMATIC");
      if (!added.ok()) {
        // Not due again until it succeeds: say why in the audit trail.
        Error err = NewMaterialError(added);
        (void)AppendAudit(c, &err);
        continue;
      }
      // One rotation per due date, even after a long downtime.
      r.next_rotation_date = now + int64_t{r.rotation_period_days} * kSecondsPerDay;
      c.key_version = r.current_version;
      change.put_records.push_back(r);
      if (r.multi_region) {
        std::lock_guard<std::mutex> pending(replicas_mu_);
        replicas_pending_.insert(r.key_id);  // pushed below, outside the writer lock
      }
    } else {
      continue;
    }
    if (!CommitWithAudit(c, change) && c.op == "DeleteKey" && current->record.on_token()) {
      std::vector<uint32_t> versions;
      for (uint32_t v = current->record.min_version; v <= current->record.current_version; ++v) {
        versions.push_back(v);
      }
      DestroyTokenKeys(current->record, versions);
    }
  }
  RemoveExpiredGrants();
  ExpireImportedMaterial();
  RetryPendingReplicas();
  FlushKeyUsage();
}

}  // namespace envelope::keyservice
