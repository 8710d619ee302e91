// Multi-Region keys: ReplicateKey and UpdatePrimaryRegion (AWS's), and the
// extension ReplicaSync by which one region's daemon pushes a key's record
// and material to another's (docs/KEYSERVICE.md, "Multi-Region keys").
//
// What replicas share with their primary: the key id, spec, usage, every
// retained version's material, the rotation schedule and the region set.
// What each keeps of its own, as in AWS: key policy, description, tags,
// grants, aliases and enabled state.
#include <algorithm>

#include "core/base/base64.h"
#include "keyservice/kms_call.h"

namespace envelope::keyservice {

using json = nlohmann::json;

namespace {

void AddRegion(std::vector<std::string>* regions, const std::string& region) {
  if (std::find(regions->begin(), regions->end(), region) == regions->end()) {
    regions->push_back(region);
  }
  std::sort(regions->begin(), regions->end());
}

void RemoveRegion(std::vector<std::string>* regions, const std::string& region) {
  regions->erase(std::remove(regions->begin(), regions->end(), region), regions->end());
}

KmsError PeerError(const std::string& region, const Status& s) {
  if (s.code() == StatusCode::kNotFound && s.message().find("region") != std::string::npos) {
    return KmsError{"ValidationException", s.message()};  // not a configured region
  }
  // An unreachable region is AWS's DependencyTimeoutException; what the
  // other daemon answered keeps its type (kms_client.h).
  if (s.code() == StatusCode::kUnavailable) {
    return KmsError{"DependencyTimeoutException",
                    "region " + region + " did not answer: " + s.message(), 503};
  }
  return KmsError{"KMSInternalException", "region " + region + ": " + s.message(), 500};
}

}  // namespace

std::string KmsService::KeyArnIn(const std::string& region, const std::string& key_id) const {
  return "arn:aws:kms:" + region + ":" + options_.account + ":key/" + key_id;
}

json KmsService::MultiRegionConfiguration(const KeyRecord& r) const {
  json replicas = json::array();
  for (const std::string& region : r.replica_regions) {
    replicas.push_back({{"Arn", KeyArnIn(region, r.key_id)}, {"Region", region}});
  }
  return json{{"MultiRegionKeyType", r.is_replica(options_.region) ? "REPLICA" : "PRIMARY"},
              {"PrimaryKey",
               {{"Arn", KeyArnIn(r.primary_region, r.key_id)}, {"Region", r.primary_region}}},
              {"ReplicaKeys", std::move(replicas)}};
}

std::optional<KmsService::Error> KmsService::RequirePrimary(const KeyRecord& r,
                                                            std::string_view what) const {
  if (!r.is_replica(options_.region)) return std::nullopt;
  return Error{"UnsupportedOperationException",
               KeyArn(r.key_id) + " is a replica of the multi-Region key in " + r.primary_region +
                   ": " + std::string(what) + " there"};
}

Status KmsService::PushReplica(const std::string& region, const KeyRecord& r,
                               const KeyEntry& entry, bool create, const std::string& policy,
                               const std::string& description,
                               const std::vector<std::pair<std::string, std::string>>& tags) {
  ENVELOPE_ASSIGN_OR_RETURN(std::unique_ptr<kms::KmsClient> client, peers_.ClientFor(region));
  json materials = json::array();
  for (const auto& [version, material] : entry.materials) {
    materials.push_back({{"Version", version}, {"Material", Base64Encode(material->view())}});
  }
  json body = {{"Record", r.ToJson()}, {"Materials", std::move(materials)}, {"Create", create}};
  if (create) {
    body["Policy"] = policy;
    body["Description"] = description;
    json t = json::array();
    for (const auto& [k, v] : tags) t.push_back({{"TagKey", k}, {"TagValue", v}});
    body["Tags"] = std::move(t);
  }
  auto answer = client->Call("EnvelopeKeyService.ReplicaSync", body);
  // The body held key material in ordinary memory: wipe it.
  for (auto& m : body["Materials"]) {
    std::string& text = m["Material"].get_ref<std::string&>();
    crypto::Cleanse(MutableByteView(reinterpret_cast<uint8_t*>(text.data()), text.size()));
  }
  return answer.status();
}

void KmsService::SyncReplicas(const std::string& key_id) {
  auto entry = store_->FindKey(key_id);
  if (!entry || !entry->record.multi_region || entry->record.is_replica(options_.region)) return;
  bool failed = false;
  for (const std::string& region : entry->record.replica_regions) {
    if (!PushReplica(region, entry->record, *entry, false, "", "", {}).ok()) failed = true;
  }
  std::lock_guard<std::mutex> lock(replicas_mu_);
  if (failed) {
    replicas_pending_.insert(key_id);
  } else {
    replicas_pending_.erase(key_id);
  }
}

void KmsService::MarkReplicasForSync() {
  std::lock_guard<std::mutex> lock(replicas_mu_);
  for (const auto& key : store_->AllKeys()) {
    if (key->record.multi_region && !key->record.is_replica(options_.region) &&
        !key->record.replica_regions.empty()) {
      replicas_pending_.insert(key->record.key_id);
    }
  }
}

void KmsService::RetryPendingReplicas() {
  std::set<std::string> pending;
  {
    std::lock_guard<std::mutex> lock(replicas_mu_);
    pending.swap(replicas_pending_);
  }
  for (const std::string& key_id : pending) SyncReplicas(key_id);
}

KmsService::Outcome KmsService::ReplicateKey(Call& c) {
  std::string ref, region, policy, description;
  bool bypass = false;
  std::vector<std::pair<std::string, std::string>> tags;
  KMS_TRY(c.req.String("KeyId", true, &ref));
  KMS_TRY(c.req.String("ReplicaRegion", true, &region));
  KMS_TRY(c.req.String("Policy", false, &policy));
  KMS_TRY(c.req.String("Description", false, &description));
  KMS_TRY(c.req.Bool("BypassPolicyLockoutSafetyCheck", &bypass));
  KMS_TRY(c.req.Tags("Tags", false, &tags));
  c.extra["replica_region"] = region;
  auto lock = store_->LockForWrite();
  std::optional<Error> err;
  auto key = Resolve(c, ref, false, &err);
  KMS_TRY(err);
  KMS_TRY(Authorize(c, *key, "kms:ReplicateKey"));
  const std::string arn = KeyArn(key->record.key_id);
  if (!key->record.multi_region) {
    return Error{"UnsupportedOperationException", arn + " is not a multi-Region key"};
  }
  KMS_TRY(RequirePrimary(key->record, "replicate it"));
  if (key->record.key_state == kStatePendingDeletion) {
    return Error{"KMSInvalidStateException", arn + " is pending deletion."};
  }
  if (region == options_.region) {
    return Error{"ValidationException", "ReplicaRegion is this key's own region"};
  }
  const auto& replicas = key->record.replica_regions;
  if (std::find(replicas.begin(), replicas.end(), region) != replicas.end()) {
    return Error{"AlreadyExistsException", arn + " already has a replica in " + region};
  }
  if (!c.req.Has("Policy")) policy = key->record.policy;
  if (!c.req.Has("Description")) description = key->record.description;
  auto parsed = KeyPolicy::Parse(policy);
  if (!parsed.ok()) return Error{"MalformedPolicyDocumentException", parsed.status().message()};
  if (!bypass && !parsed->Allows(c.who, "kms:PutKeyPolicy", KeyArnIn(region, key->record.key_id))) {
    return Error{"MalformedPolicyDocumentException",
                 "The new key policy will not allow you to update the key policy in the future."};
  }
  KeyRecord r = key->record;
  AddRegion(&r.replica_regions, region);
  // The replica first: if the region cannot take it, nothing changes here.
  // (The writer lock is held across the call; the client's timeouts bound
  // it.)
  if (Status s = PushReplica(region, r, *key, true, policy, description, tags); !s.ok()) {
    return PeerError(region, s);
  }
  KeyStore::Change change;
  change.put_records.push_back(r);
  KMS_TRY(CommitWithAudit(c, change));
  lock.unlock();
  SyncReplicas(r.key_id);  // the others learn of the new region
  KeyRecord replica = r;
  replica.policy = policy;
  replica.description = description;
  replica.tags = tags;
  json metadata = KeyMetadata(replica);
  metadata["Arn"] = KeyArnIn(region, r.key_id);
  metadata["MultiRegionConfiguration"]["MultiRegionKeyType"] = "REPLICA";
  json t = json::array();
  for (const auto& [k, v] : tags) t.push_back({{"TagKey", k}, {"TagValue", v}});
  return json{{"ReplicaKeyMetadata", std::move(metadata)},
              {"ReplicaPolicy", policy},
              {"ReplicaTags", std::move(t)}};
}

KmsService::Outcome KmsService::UpdatePrimaryRegion(Call& c) {
  std::string ref, region;
  KMS_TRY(c.req.String("KeyId", true, &ref));
  KMS_TRY(c.req.String("PrimaryRegion", true, &region));
  c.extra["primary_region"] = region;
  auto lock = store_->LockForWrite();
  std::optional<Error> err;
  auto key = Resolve(c, ref, false, &err);
  KMS_TRY(err);
  KMS_TRY(Authorize(c, *key, "kms:UpdatePrimaryRegion"));
  const std::string arn = KeyArn(key->record.key_id);
  if (!key->record.multi_region) {
    return Error{"UnsupportedOperationException", arn + " is not a multi-Region key"};
  }
  KMS_TRY(RequirePrimary(key->record, "change its primary region"));
  const auto& replicas = key->record.replica_regions;
  if (std::find(replicas.begin(), replicas.end(), region) == replicas.end()) {
    return Error{"NotFoundException", arn + " has no replica in " + region};
  }
  KeyRecord r = key->record;
  RemoveRegion(&r.replica_regions, region);
  AddRegion(&r.replica_regions, options_.region);
  r.primary_region = region;
  // The new primary first; then this copy becomes a replica.
  if (Status s = PushReplica(region, r, *key, false, "", "", {}); !s.ok()) {
    return PeerError(region, s);
  }
  KeyStore::Change change;
  change.put_records.push_back(r);
  KMS_TRY(CommitWithAudit(c, change));
  return json::object();
}

KmsService::Outcome KmsService::ReplicaSync(Call& c) {
  // Only the daemons of other regions, as the operator named them.
  const std::vector<std::string> names = c.who.PolicyNames();
  const bool allowed = std::any_of(
      options_.replication_principals.begin(), options_.replication_principals.end(),
      [&](const std::string& p) { return std::find(names.begin(), names.end(), p) != names.end(); });
  if (!allowed) {
    return Error{"AccessDeniedException",
                 "User: " + c.who.PrimaryName() +
                     " is not a replication principal of this region (--replication-principal)"};
  }
  std::string record_text;
  bool create = false;
  KMS_TRY(c.req.String("Record", true, &record_text));
  KMS_TRY(c.req.Bool("Create", &create));
  auto incoming = KeyRecord::FromJson(record_text);
  if (!incoming.ok() || !incoming->multi_region) {
    return Error{"ValidationException", "Record is not a multi-Region key record"};
  }
  c.key_id = incoming->key_id;
  if (incoming->primary_region != options_.region &&
      std::find(incoming->replica_regions.begin(), incoming->replica_regions.end(),
                options_.region) == incoming->replica_regions.end()) {
    return Error{"ValidationException", "the key's regions do not include " + options_.region};
  }
  // The material of every retained version.
  std::map<uint32_t, std::shared_ptr<const crypto::SecretBytes>> materials;
  if (!c.in.contains("Materials") || !c.in["Materials"].is_array()) {
    return Error{"ValidationException", "Materials must be an array"};
  }
  for (const json& m : c.in["Materials"]) {
    if (!m.is_object() || !m.contains("Version") || !m["Version"].is_number_unsigned() ||
        !m.contains("Material") || !m["Material"].is_string()) {
      return Error{"ValidationException", "each material needs Version and Material"};
    }
    const std::string& text = m["Material"].get_ref<const std::string&>();
    auto material = crypto::SecretBytes::Zeroed(static_cast<size_t>(Base64DecodedSize(text)));
    if (!material.ok() || !Base64DecodeInto(text, material->mutable_view())) {
      return Error{"ValidationException", "a Material is not base64"};
    }
    materials[m["Version"].get<uint32_t>()] =
        std::make_shared<const crypto::SecretBytes>(std::move(*material));
  }
  for (uint32_t v = incoming->min_version; v <= incoming->current_version; ++v) {
    if (!incoming->on_token() && !materials.count(v)) {
      return Error{"ValidationException", "the material of version " + std::to_string(v) +
                                              " is missing"};
    }
  }
  auto lock = store_->LockForWrite();
  auto existing = store_->FindKey(incoming->key_id);
  KeyRecord r;
  if (existing) {
    if (!existing->record.multi_region) {
      return Error{"AlreadyExistsException",
                   "key " + incoming->key_id + " exists here and is not multi-Region"};
    }
    r = existing->record;  // keeps policy, description, tags, grants, state
  } else {
    if (!create) return Error{"NotFoundException", "no replica of " + incoming->key_id + " here"};
    std::string policy, description;
    KMS_TRY(c.req.String("Policy", true, &policy));
    KMS_TRY(c.req.String("Description", false, &description));
    if (!KeyPolicy::Parse(policy).ok()) {
      return Error{"MalformedPolicyDocumentException", "the replica's policy does not parse"};
    }
    r = *incoming;
    r.policy = policy;
    r.description = description;
    r.tags.clear();
    KMS_TRY(c.req.Tags("Tags", false, &r.tags));
    std::sort(r.tags.begin(), r.tags.end());
    r.grants.clear();
    r.creator.clear();  // another region's principal: counts against no quota here
    r.key_state = kStateEnabled;
    r.enabled_flag = true;
  }
  // The shared part.
  r.key_spec = incoming->key_spec;
  r.key_usage = incoming->key_usage;
  r.versions = incoming->versions;
  r.current_version = incoming->current_version;
  r.rotation_enabled = incoming->rotation_enabled;
  r.rotation_period_days = incoming->rotation_period_days;
  r.next_rotation_date = incoming->next_rotation_date;
  r.primary_region = incoming->primary_region;
  r.replica_regions = incoming->replica_regions;
  KeyStore::Change change;
  for (const auto& [version, material] : materials) {
    if (version < incoming->min_version || version > incoming->current_version) continue;
    if (existing && existing->materials.count(version)) continue;
    change.put_materials.emplace_back(r.key_id, version, material);
  }
  if (existing) {
    for (uint32_t v = r.min_version; v < incoming->min_version; ++v) {
      change.delete_materials.emplace_back(r.key_id, v);
    }
  }
  r.min_version = std::max(r.min_version, incoming->min_version);
  change.put_records.push_back(r);
  c.key_version = r.current_version;
  c.extra["primary_region"] = r.primary_region;
  c.extra["versions_added"] = change.put_materials.size();
  KMS_TRY(CommitWithAudit(c, change));
  return json{{"KeyId", r.key_id}, {"CurrentKeyVersion", r.current_version}};
}

}  // namespace envelope::keyservice
