#include "keyservice/key_record.h"

#include <nlohmann/json.hpp>

#include "keyservice/json_output.h"

namespace envelope::keyservice {

using json = nlohmann::json;

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
  if (on_token()) {
    doc["origin"] = origin;
    doc["custom_key_store_id"] = custom_key_store_id;
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
    if (r.origin != kOriginAwsKms && r.origin != kOriginCloudHsm) {
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
    return r;
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("key record: ") + e.what());
  }
}

}  // namespace envelope::keyservice
