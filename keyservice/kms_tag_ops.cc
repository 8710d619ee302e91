// Tags: TagResource, UntagResource, ListResourceTags.
#include <algorithm>

#include "keyservice/kms_call.h"
#include "keyservice/kms_paginate.h"

namespace envelope::keyservice {

using json = nlohmann::json;

KmsService::Outcome KmsService::TagResource(Call& c) {
  std::vector<std::pair<std::string, std::string>> tags;
  KMS_TRY(c.req.Tags("Tags", true, &tags));
  auto mutated = MutateKey(
      c, "kms:TagResource",
      [&]([[maybe_unused]] KeyRecord& r, [[maybe_unused]] KeyStore::Change& change,
          [[maybe_unused]] const KeyEntry& current) -> std::optional<Error> {
    for (auto& [k, v] : tags) {
      // By name, not a capture of the binding: clang before 16 cannot
      // capture structured bindings (tests/fuzz builds with clang).
      const std::string& name = k;
      auto it = std::find_if(r.tags.begin(), r.tags.end(),
                             [&](const auto& t) { return t.first == name; });
      if (it != r.tags.end()) {
        it->second = v;
      } else {
        r.tags.emplace_back(k, v);
      }
    }
    if (r.tags.size() > 50) return Error{"TagException", "a key can have at most 50 tags"};
    std::sort(r.tags.begin(), r.tags.end());
    return std::nullopt;
  });
  if (auto* e = std::get_if<Error>(&mutated)) return *e;
  return json::object();
}

KmsService::Outcome KmsService::UntagResource(Call& c) {
  std::vector<std::string> keys;
  KMS_TRY(c.req.StringList("TagKeys", true, &keys));
  auto mutated = MutateKey(
      c, "kms:UntagResource",
      [&]([[maybe_unused]] KeyRecord& r, [[maybe_unused]] KeyStore::Change& change,
          [[maybe_unused]] const KeyEntry& current) -> std::optional<Error> {
    std::erase_if(r.tags, [&](const auto& t) {
      return std::find(keys.begin(), keys.end(), t.first) != keys.end();
    });
    return std::nullopt;
  });
  if (auto* e = std::get_if<Error>(&mutated)) return *e;
  return json::object();
}

KmsService::Outcome KmsService::ListResourceTags(Call& c) {
  std::string ref;
  KMS_TRY(c.req.String("KeyId", true, &ref));
  std::optional<Error> err;
  auto key = Resolve(c, ref, false, &err);
  KMS_TRY(err);
  KMS_TRY(Authorize(c, *key, "kms:ListResourceTags"));
  auto tags = key->record.tags;
  bool truncated = false;
  std::string marker;
  KMS_TRY(Paginate(c.req, &tags, [](const auto& t) { return t.first; }, &truncated, &marker));
  json list = json::array();
  for (const auto& [k, v] : tags) list.push_back({{"TagKey", k}, {"TagValue", v}});
  return PageFields(json{{"Tags", list}}, truncated, marker);
}

}  // namespace envelope::keyservice
