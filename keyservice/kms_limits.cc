// What new key material may take: per-principal quotas on keys and key
// versions, and the secure-heap reserve (docs/KEYSERVICE.md, "Quotas and
// the secure-heap reserve"). AddVersion is the one place new material is
// made, so the reserve is checked there and nowhere else.
#include <algorithm>

#include "keyservice/key_spec.h"
#include "keyservice/kms_call.h"

namespace envelope::keyservice {

namespace {


}  // namespace

bool NewMaterialFits(const crypto::SecureHeapUsage& usage, size_t more_bytes,
                     unsigned reserve_percent) {
  if (usage.size_in_bytes == 0) return true;
  const size_t reserve = usage.size_in_bytes / 100 * std::min(reserve_percent, 100u);
  return usage.used_in_bytes + more_bytes + reserve <= usage.size_in_bytes;
}

Status KmsService::AddVersion(KeyRecord* record, KeyStore::Change* change,
                              const char* rotation_type) {
  if (record->on_token()) {
    // Made on the token, never here: nothing enters the secure heap or the
    // store. A commit that fails after this leaves the token key behind,
    // and the next version of that number takes it over (MakeKey).
    ENVELOPE_RETURN_IF_ERROR(custom_key_stores_->MakeKey(record->custom_key_store_id,
                                                         record->key_id,
                                                         record->current_version + 1));
    record->AddVersion(Now(), rotation_type);
    return Status::Ok();
  }
  const KeySpec* spec = FindKeySpec(record->key_spec);
  if (spec == nullptr) return Status::Internal("unknown key spec " + record->key_spec);
  if (!NewMaterialFits(crypto::GetSecureHeapUsage(), spec->material_size,
                       options_.secure_heap_reserve_percent)) {
    return Status::ResourceExhausted(
        "the secure heap has no room for more key material: the rest is reserved for "
        "operations on existing keys (retire key versions, delete keys, or start "
        "envelope-keyd with a larger --secure-heap-mib)");
  }
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes material, spec->MakeMaterial());
  const uint32_t version = record->AddVersion(Now(), rotation_type);
  change->put_materials.emplace_back(record->key_id, version,
                                     std::make_shared<const crypto::SecretBytes>(std::move(material)));
  return Status::Ok();
}

KmsService::Error KmsService::NewMaterialError(const Status& s) {
  if (s.code() == StatusCode::kResourceExhausted) {
    return Error{"LimitExceededException", s.message()};
  }
  if (s.code() == StatusCode::kFailedPrecondition) {  // a custom key store not connected
    return Error{"KMSInvalidStateException", s.message()};
  }
  return Error{"KMSInternalException", s.message(), 500};
}

std::optional<KmsService::Error> KmsService::CheckQuota(const std::string& owner,
                                                        size_t new_keys,
                                                        size_t new_versions) const {
  if (owner.empty()) return std::nullopt;  // keys from before creators were recorded
  size_t keys = 0, versions = 0;
  for (const auto& k : store_->AllKeys()) {
    if (k->record.creator != owner) continue;
    ++keys;
    versions += k->record.retained_versions();
  }
  const size_t max_keys = options_.max_keys_per_principal;
  const size_t max_versions = options_.max_key_versions_per_principal;
  if (new_keys > 0 && max_keys > 0 && keys + new_keys > max_keys) {
    return Error{"LimitExceededException",
                 owner + " already has " + std::to_string(keys) + " keys, its quota is " +
                     std::to_string(max_keys) + " (delete keys, or raise "
                     "--max-keys-per-principal)"};
  }
  if (max_versions > 0 && versions + new_versions > max_versions) {
    return Error{"LimitExceededException",
                 "the keys of " + owner + " already retain " + std::to_string(versions) +
                     " key versions, its quota is " + std::to_string(max_versions) +
                     " (retire versions, delete keys, or raise "
                     "--max-key-versions-per-principal)"};
  }
  return std::nullopt;
}

}  // namespace envelope::keyservice
