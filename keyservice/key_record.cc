#include "keyservice/key_record.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "keyservice/json_output.h"

namespace envelope::keyservice {

using json = nlohmann::json;

Status KeyRecord::SetEnabled(bool enabled) {
  if (key_state == kStatePendingDeletion) return Status::FailedPrecondition("is pending deletion.");
  if (key_state == kStatePendingImport) {
    return Status::FailedPrecondition("is pending import (ImportKeyMaterial first).");
  }
  key_state = enabled ? kStateEnabled : kStateDisabled;
  enabled_flag = enabled;
  return Status::Ok();
}

Status KeyRecord::SetDescription(std::string text) {
  if (key_state == kStatePendingDeletion) return Status::FailedPrecondition("is pending deletion.");
  description = std::move(text);
  return Status::Ok();
}

Status KeyRecord::ScheduleDeletion(int days, int64_t now) {
  if (key_state == kStatePendingDeletion) return Status::FailedPrecondition("is pending deletion.");
  key_state = kStatePendingDeletion;
  pending_window_days = days;
  deletion_date = now + int64_t{days} * 86400;
  return Status::Ok();
}

Status KeyRecord::CancelDeletion() {
  if (key_state != kStatePendingDeletion) {
    return Status::FailedPrecondition("is not pending deletion.");
  }
  // A key whose imported material is gone goes back to waiting for it.
  key_state = external() && !material_imported ? kStatePendingImport : kStateDisabled;
  enabled_flag = false;
  deletion_date = 0;
  pending_window_days = 0;
  return Status::Ok();
}

uint32_t KeyRecord::AddVersion(int64_t now, const std::string& rotation_type) {
  const uint32_t version = current_version + 1;
  versions.push_back({version, now, rotation_type});
  current_version = version;
  return version;
}

StatusOr<std::vector<uint32_t>> KeyRecord::Retire(uint32_t below) {
  if (below < 1 || below > current_version) {
    return Status::InvalidArgument("BelowVersion must be between 1 and the current version " +
                                   std::to_string(current_version));
  }
  std::vector<uint32_t> retired;
  for (uint32_t v = min_version; v < below; ++v) retired.push_back(v);
  min_version = std::max(min_version, below);
  return retired;
}

Status KeyRecord::AddGrant(Grant grant) {
  if (grants.size() >= kMaxGrantsPerKey) {
    return Status::ResourceExhausted("the key has " + std::to_string(grants.size()) +
                                     " grants, the most one key may have");
  }
  const size_t for_grantee = static_cast<size_t>(std::count_if(
      grants.begin(), grants.end(), [&](const Grant& g) { return g.grantee == grant.grantee; }));
  if (for_grantee >= kMaxGrantsPerGrantee) {
    return Status::ResourceExhausted(grant.grantee + " already has " +
                                     std::to_string(for_grantee) +
                                     " grants on this key, the most one principal may have");
  }
  grants.push_back(std::move(grant));
  return Status::Ok();
}

const Grant* KeyRecord::FindGrant(std::string_view grant_id) const {
  for (const Grant& g : grants) {
    if (g.grant_id == grant_id) return &g;
  }
  return nullptr;
}

Status KeyRecord::RemoveGrant(std::string_view grant_id) {
  auto it = std::find_if(grants.begin(), grants.end(),
                         [&](const Grant& g) { return g.grant_id == grant_id; });
  if (it == grants.end()) return Status::NotFound("no grant " + std::string(grant_id));
  grants.erase(it);
  return Status::Ok();
}

size_t KeyRecord::RemoveExpiredGrants(int64_t now) {
  const size_t before = grants.size();
  std::erase_if(grants, [&](const Grant& g) { return g.expired(now); });
  return before - grants.size();
}

std::string KeyRecord::ToJson() const {
  json versions_json = json::array();
  for (const auto& v : versions) {
    versions_json.push_back(
        {{"number", v.number}, {"created", v.created}, {"rotation_type", v.rotation_type}});
  }
  json tags_json = json::array();
  for (const auto& [k, v] : tags) tags_json.push_back({{"key", k}, {"value", v}});
  json doc = {{"record_version", 1},
              {"key_id", key_id},
              {"description", description},
              {"creator", creator},
              {"key_state", key_state},
              {"creation_date", creation_date},
              {"deletion_date", deletion_date},
              {"pending_window_days", pending_window_days},
              {"enabled_flag", enabled_flag},
              {"rotation_enabled", rotation_enabled},
              {"rotation_period_days", rotation_period_days},
              {"next_rotation_date", next_rotation_date},
              {"policy", policy},
              {"tags", tags_json},
              {"versions", versions_json},
              {"current_version", current_version},
              {"min_version", min_version}};
  if (!symmetric()) {
    doc["key_spec"] = key_spec;
    doc["key_usage"] = key_usage;
  }
  if (multi_region) {
    doc["multi_region"] = true;
    doc["primary_region"] = primary_region;
    doc["replica_regions"] = replica_regions;
  }
  if (!grants.empty()) {
    json grants_json = json::array();
    for (const Grant& g : grants) grants_json.push_back(GrantToJson(g));
    doc["grants"] = std::move(grants_json);
  }
  if (on_token()) {
    doc["origin"] = origin;
    doc["custom_key_store_id"] = custom_key_store_id;
  }
  if (external()) {
    doc["origin"] = origin;
    doc["material_imported"] = material_imported;
    doc["import_digest"] = import_digest;
    doc["valid_to"] = valid_to;
  }
  return DumpJson(doc);
}

StatusOr<KeyRecord> KeyRecord::FromJson(std::string_view text) {
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Status::Corruption("key record is not JSON");
  }
  try {
    if (doc.at("record_version").get<int>() != 1) {
      return Status::Corruption("unknown key record version");
    }
    KeyRecord r;
    r.key_id = doc.at("key_id").get<std::string>();
    r.description = doc.at("description").get<std::string>();
    r.creator = doc.value("creator", std::string());  // absent in older records
    r.key_state = doc.at("key_state").get<std::string>();
    r.origin = doc.value("origin", std::string(kOriginAwsKms));  // absent: AWS_KMS
    r.custom_key_store_id = doc.value("custom_key_store_id", std::string());
    r.key_spec = doc.value("key_spec", std::string("SYMMETRIC_DEFAULT"));  // absent: symmetric
    r.key_usage = doc.value("key_usage", std::string("ENCRYPT_DECRYPT"));
    r.material_imported = doc.value("material_imported", false);
    r.import_digest = doc.value("import_digest", std::string());
    r.valid_to = doc.value("valid_to", int64_t{0});
    if (r.origin != kOriginAwsKms && r.origin != kOriginCloudHsm && r.origin != kOriginExternal) {
      return Status::Corruption("key record with unknown origin " + r.origin);
    }
    r.creation_date = doc.at("creation_date").get<int64_t>();
    r.deletion_date = doc.at("deletion_date").get<int64_t>();
    r.pending_window_days = doc.at("pending_window_days").get<int>();
    r.enabled_flag = doc.at("enabled_flag").get<bool>();
    r.rotation_enabled = doc.at("rotation_enabled").get<bool>();
    r.rotation_period_days = doc.at("rotation_period_days").get<int>();
    r.next_rotation_date = doc.at("next_rotation_date").get<int64_t>();
    r.policy = doc.at("policy").get<std::string>();
    for (const auto& t : doc.at("tags")) {
      r.tags.emplace_back(t.at("key").get<std::string>(), t.at("value").get<std::string>());
    }
    for (const auto& v : doc.at("versions")) {
      r.versions.push_back({v.at("number").get<uint32_t>(), v.at("created").get<int64_t>(),
                            v.at("rotation_type").get<std::string>()});
    }
    r.current_version = doc.at("current_version").get<uint32_t>();
    r.min_version = doc.at("min_version").get<uint32_t>();
    r.multi_region = doc.value("multi_region", false);
    r.primary_region = doc.value("primary_region", std::string());
    if (doc.contains("replica_regions")) {
      r.replica_regions = doc.at("replica_regions").get<std::vector<std::string>>();
    }
    if (doc.contains("grants")) {  // absent: none (and in records made before grants)
      for (const auto& g : doc.at("grants")) {
        ENVELOPE_ASSIGN_OR_RETURN(Grant grant, GrantFromJson(g));
        r.grants.push_back(std::move(grant));
      }
    }
    return r;
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("key record: ") + e.what());
  }
}

}  // namespace envelope::keyservice
