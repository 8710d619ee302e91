#include "kms/grant_client.h"

#include <algorithm>
#include <optional>

#include "core/base/ascii.h"

namespace envelope::kms {

using json = nlohmann::json;

namespace {

EncryptionContextMap LowerKeys(const EncryptionContextMap& m) {
  EncryptionContextMap out;
  for (const auto& [k, v] : m) out[ascii::ToLower(k)] = v;
  return out;
}

// One ListGrants entry as a GrantInfo, if it is a grant constrained to
// exactly the context `want` (keys lower-cased) and, unless `grantee` is
// empty, for that grantee.
std::optional<GrantInfo> MatchingGrant(const json& g, const EncryptionContextMap& want,
                                       const std::string& grantee) {
  if (!g.is_object() || !g.contains("GrantId") || !g["GrantId"].is_string()) return std::nullopt;
  const json* equals = nullptr;
  if (auto c = g.find("Constraints"); c != g.end() && c->is_object()) {
    if (auto e = c->find("EncryptionContextEquals"); e != c->end() && e->is_object()) {
      equals = &*e;
    }
  }
  if (equals == nullptr) return std::nullopt;
  EncryptionContextMap have;
  for (const auto& [k, v] : equals->items()) {
    if (!v.is_string()) return std::nullopt;
    have[ascii::ToLower(k)] = v.get<std::string>();
  }
  if (have != want) return std::nullopt;
  GrantInfo info;
  info.grant_id = g["GrantId"].get<std::string>();
  info.grantee = g.value("GranteePrincipal", std::string());
  if (auto x = g.find("Expiry"); x != g.end() && x->is_number_integer()) {
    info.expiry = x->get<int64_t>();
  }
  if (!grantee.empty() && info.grantee != grantee) return std::nullopt;
  return info;
}

}  // namespace

StatusOr<std::string> CreateGrant(KmsClient& client, const GrantSpec& spec, bool keyd) {
  if (spec.expiry != 0 && !keyd) {
    return Status::InvalidArgument(
        "AWS KMS grants cannot expire: --until needs envelope-keyd (revoke with unshare)");
  }
  json request = {{"KeyId", spec.key},
                  {"GranteePrincipal", spec.grantee},
                  {"Operations", spec.operations},
                  {"Constraints", {{"EncryptionContextEquals", spec.context_equals}}}};
  if (!spec.name.empty()) request["Name"] = spec.name;
  if (spec.expiry != 0) request["Expiry"] = spec.expiry;
  ENVELOPE_ASSIGN_OR_RETURN(json r, client.Call("TrentService.CreateGrant", request));
  auto id = r.find("GrantId");
  if (id == r.end() || !id->is_string()) {
    return Status::Internal("CreateGrant: the service named no GrantId");
  }
  return id->get<std::string>();
}

StatusOr<std::vector<GrantInfo>> GrantsFor(KmsClient& client, const std::string& key,
                                           const EncryptionContextMap& context,
                                           const std::string& grantee) {
  const EncryptionContextMap want = LowerKeys(context);
  std::vector<GrantInfo> out;
  ENVELOPE_RETURN_IF_ERROR(client.CallEachPage(
      "TrentService.ListGrants", {{"KeyId", key}, {"Limit", 1000}}, [&](json& page) {
        auto grants = page.find("Grants");
        if (grants == page.end() || !grants->is_array()) return;
        for (const json& g : *grants) {
          if (auto info = MatchingGrant(g, want, grantee)) out.push_back(std::move(*info));
        }
      }));
  return out;
}

Status RevokeGrant(KmsClient& client, const std::string& key, const std::string& grant_id) {
  return client.Call("TrentService.RevokeGrant", {{"KeyId", key}, {"GrantId", grant_id}})
      .status();
}

}  // namespace envelope::kms
