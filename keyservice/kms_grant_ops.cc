// Grants: CreateGrant, ListGrants, ListRetirableGrants, RetireGrant and
// RevokeGrant, with AWS's fields and errors, and the removal of expired
// grants (an extension). What a grant is and allows: grant.h. How a
// request is authorised by one: KmsService::Authorize.
#include <algorithm>

#include "keyservice/kms_call.h"
#include "keyservice/kms_paginate.h"

namespace envelope::keyservice {

using json = nlohmann::json;

namespace {

constexpr size_t kMaxGrantTokens = 10;
constexpr size_t kMaxGrantTokenLength = 8192;

bool ValidGrantName(std::string_view name) {
  if (name.empty() || name.size() > 256) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == ':' || c == '/' || c == '_' || c == '-';
  });
}

std::optional<KmsError> ParseConstraints(const json& in, Grant* g) {
  if (!in.contains("Constraints") || in["Constraints"].is_null()) return std::nullopt;
  const json& constraints = in["Constraints"];
  if (!constraints.is_object()) {
    return KmsError{"SerializationException", "field Constraints must be an object"};
  }
  for (const auto& [field, value] : constraints.items()) {
    if (field != "EncryptionContextEquals" && field != "EncryptionContextSubset") {
      return KmsError{"ValidationException", "unknown grant constraint " + field};
    }
  }
  KmsRequest req(constraints);
  for (auto [field, out] : {std::pair{"EncryptionContextEquals", &g->context_equals},
                            std::pair{"EncryptionContextSubset", &g->context_subset}}) {
    if (!req.Has(field)) continue;
    EncryptionContext context;
    if (auto e = req.Context(field, &context)) return e;
    *out = std::move(context);
  }
  return std::nullopt;
}

bool Answers(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

KmsError InvalidGrantId(const std::string& id) {
  return KmsError{"InvalidGrantIdException", "'" + id + "' is not a grant id of this service"};
}

KmsError GrantNotFound(const std::string& id, const std::string& arn) {
  return KmsError{"NotFoundException", "Grant " + id + " does not exist on " + arn};
}

}  // namespace

std::optional<KmsService::Error> KmsService::CheckGrantTokens(const KmsRequest& req) {
  if (!req.Has("GrantTokens")) return std::nullopt;
  std::vector<std::string> tokens;
  KMS_TRY(req.StringList("GrantTokens", false, &tokens));
  if (tokens.size() > kMaxGrantTokens) {
    return KmsRequest::Invalid("GrantTokens", "Member must have length less than or equal to 10");
  }
  for (const std::string& token : tokens) {
    if (token.empty() || token.size() > kMaxGrantTokenLength ||
        !ParseGrantToken(token).ok()) {
      return Error{"InvalidGrantTokenException",
                   "A grant token in GrantTokens was not issued by this service"};
    }
  }
  return std::nullopt;
}

KmsService::Outcome KmsService::CreateGrant(Call& c) {
  std::string ref;
  Grant g;
  KMS_TRY(c.req.String("KeyId", true, &ref));
  KMS_TRY(c.req.String("GranteePrincipal", true, &g.grantee));
  KMS_TRY(c.req.String("RetiringPrincipal", false, &g.retiring));
  KMS_TRY(c.req.String("Name", false, &g.name));
  KMS_TRY(c.req.StringList("Operations", true, &g.operations));
  KMS_TRY(ParseConstraints(c.in, &g));
  KMS_TRY(c.req.Int("Expiry", false, &g.expiry));  // extension (grant.h)
  if (c.req.Has("Name") && !ValidGrantName(g.name)) {
    return KmsRequest::Invalid("Name", "Member must satisfy regular expression pattern: "
                                       "^[a-zA-Z0-9:/_-]+$ and have length between 1 and 256");
  }
  if (Status s = ValidateGrant(&g); !s.ok()) return Error{"ValidationException", s.message()};
  if (c.req.Has("Expiry") && g.expiry <= Now()) {
    return Error{"ValidationException", "Expiry must be in the future (epoch seconds)"};
  }
  c.extra["grantee_principal"] = g.grantee;
  c.extra["operations"] = g.operations;

  auto lock = store_->LockForWrite();
  std::optional<Error> err;
  auto key = Resolve(c, ref, false, &err);
  KMS_TRY(err);
  const std::string arn = KeyArn(key->record.key_id);
  // The policy's kms:CreateGrant, else a grant of the caller's with
  // CreateGrant that covers the new one (no wider operations, constraints
  // as strict, expiry no later).
  const KeyPolicy::Decision decision =
      key->policy.Evaluate(c.who, "kms:CreateGrant", arn, Facts(c, {}));
  if (decision != KeyPolicy::Decision::kAllow) {
    const Grant* parent = nullptr;
    if (decision == KeyPolicy::Decision::kImplicitDeny) {
      const std::vector<std::string> names = c.who.PolicyNames();
      for (const Grant& held : key->record.grants) {
        if (held.Allows(names, "CreateGrant", {}, Now()) && held.Covers(g)) {
          parent = &held;
          break;
        }
      }
    }
    if (parent == nullptr) {
      return Error{"AccessDeniedException",
                   "User: " + c.who.PrimaryName() +
                       " is not authorized to perform: kms:CreateGrant on resource: " + arn +
                       " because no key policy statement allows it and no grant of the "
                       "caller's allows CreateGrant for a grant this wide"};
    }
    NoteGrantUsed(c, *parent);
  }
  KMS_TRY(RequireUsable(*key));

  // Name idempotency: the same request again answers the same grant.
  std::string grant_id;
  if (!g.name.empty()) {
    for (const Grant& existing : key->record.grants) {
      if (existing.SameRequest(g)) grant_id = existing.grant_id;
    }
  }
  if (grant_id.empty()) {
    auto id = NewGrantId();
    if (!id.ok()) return Error{"KMSInternalException", id.status().message(), 500};
    g.grant_id = *id;
    g.creation_date = Now();
    g.issuer = c.who.PrimaryName();
    KeyRecord r = key->record;
    KMS_TRY(RuleError(r, r.AddGrant(g)));
    KeyStore::Change change;
    change.put_records.push_back(std::move(r));
    c.extra["grant_id"] = g.grant_id;
    KMS_TRY(CommitWithAudit(c, change));
    grant_id = g.grant_id;
  } else {
    c.extra["grant_id"] = grant_id;
    c.extra["existing_grant"] = true;
  }
  auto token = MakeGrantToken(key->record.key_id, grant_id);
  if (!token.ok()) return Error{"KMSInternalException", token.status().message(), 500};
  return json{{"GrantToken", *token}, {"GrantId", grant_id}};
}

KmsService::Outcome KmsService::ListGrants(Call& c) {
  std::string ref, grant_id, grantee;
  KMS_TRY(c.req.String("KeyId", true, &ref));
  KMS_TRY(c.req.String("GrantId", false, &grant_id));
  KMS_TRY(c.req.String("GranteePrincipal", false, &grantee));
  if (c.req.Has("GrantId") && !ValidGrantId(grant_id)) return InvalidGrantId(grant_id);
  std::optional<Error> err;
  auto key = Resolve(c, ref, false, &err);
  KMS_TRY(err);
  KMS_TRY(Authorize(c, *key, "kms:ListGrants"));
  std::vector<Grant> grants;
  for (const Grant& g : key->record.grants) {
    if (c.req.Has("GrantId") && g.grant_id != grant_id) continue;
    if (c.req.Has("GranteePrincipal") && g.grantee != grantee) continue;
    grants.push_back(g);
  }
  std::sort(grants.begin(), grants.end(),
            [](const Grant& a, const Grant& b) { return a.grant_id < b.grant_id; });
  bool truncated = false;
  std::string marker;
  KMS_TRY(Paginate(c.req, &grants, [](const Grant& g) { return g.grant_id; }, &truncated,
                   &marker));
  json out = json::array();
  for (const Grant& g : grants) {
    json e = GrantListEntry(g);
    e["KeyId"] = KeyArn(key->record.key_id);
    e["IssuingAccount"] = "arn:aws:iam::" + options_.account + ":root";
    out.push_back(std::move(e));
  }
  return PageFields(json{{"Grants", std::move(out)}}, truncated, marker);
}

KmsService::Outcome KmsService::ListRetirableGrants(Call& c) {
  std::string retiring;
  KMS_TRY(c.req.String("RetiringPrincipal", true, &retiring));
  // A caller lists the grants it may retire by name; root lists anyone's.
  if (!c.who.is_root() && !Answers(c.who.PolicyNames(), retiring)) {
    return Error{"AccessDeniedException",
                 "User: " + c.who.PrimaryName() +
                     " is not authorized to perform: kms:ListRetirableGrants for " + retiring +
                     " (a caller lists the grants retirable by one of its own names)"};
  }
  struct Item {
    std::string sort_key;  // key id / grant id
    json entry;
  };
  std::vector<Item> items;
  for (const auto& key : store_->AllKeys()) {
    for (const Grant& g : key->record.grants) {
      if (g.retiring != retiring) continue;
      json e = GrantListEntry(g);
      e["KeyId"] = KeyArn(key->record.key_id);
      e["IssuingAccount"] = "arn:aws:iam::" + options_.account + ":root";
      items.push_back({key->record.key_id + "/" + g.grant_id, std::move(e)});
    }
  }
  std::sort(items.begin(), items.end(),
            [](const Item& a, const Item& b) { return a.sort_key < b.sort_key; });
  bool truncated = false;
  std::string marker;
  KMS_TRY(Paginate(c.req, &items, [](const Item& i) { return i.sort_key; }, &truncated, &marker));
  json out = json::array();
  for (Item& i : items) out.push_back(std::move(i.entry));
  return PageFields(json{{"Grants", std::move(out)}}, truncated, marker);
}

// Removes grant `grant_id` of the key `ref` names, once `may_remove`
// agrees; the common end of RetireGrant and RevokeGrant.
KmsService::Outcome KmsService::RemoveGrant(
    Call& c, const std::string& ref, const std::string& grant_id,
    const std::function<std::optional<Error>(const KeyEntry&, const Grant&)>& may_remove) {
  c.extra["grant_id"] = grant_id;
  auto lock = store_->LockForWrite();
  std::optional<Error> err;
  auto key = Resolve(c, ref, false, &err);
  KMS_TRY(err);
  const Grant* grant = key->record.FindGrant(grant_id);
  if (grant == nullptr) return GrantNotFound(grant_id, KeyArn(key->record.key_id));
  KMS_TRY(may_remove(*key, *grant));
  KeyRecord r = key->record;
  KMS_TRY(RuleError(r, r.RemoveGrant(grant_id)));
  KeyStore::Change change;
  change.put_records.push_back(std::move(r));
  KMS_TRY(CommitWithAudit(c, change));
  return json::object();
}

KmsService::Outcome KmsService::RetireGrant(Call& c) {
  std::string token, ref, grant_id;
  KMS_TRY(c.req.String("GrantToken", false, &token));
  KMS_TRY(c.req.String("KeyId", false, &ref));
  KMS_TRY(c.req.String("GrantId", false, &grant_id));
  if (c.req.Has("GrantToken")) {
    auto parts = ParseGrantToken(token);
    if (!parts.ok()) {
      return Error{"InvalidGrantTokenException", "the grant token was not issued by this service"};
    }
    if ((c.req.Has("GrantId") && grant_id != parts->grant_id)) {
      return Error{"ValidationException", "GrantId and GrantToken name different grants"};
    }
    if (!c.req.Has("KeyId")) ref = parts->key_id;
    grant_id = parts->grant_id;
  } else if (!c.req.Has("KeyId") || !c.req.Has("GrantId")) {
    return Error{"ValidationException", "RetireGrant needs GrantToken, or KeyId and GrantId"};
  }
  if (!ValidGrantId(grant_id)) return InvalidGrantId(grant_id);
  return RemoveGrant(c, ref, grant_id, [&](const KeyEntry& key, const Grant& g)
                                           -> std::optional<Error> {
    // The retiring principal; the grantee, if the grant lists RetireGrant;
    // or whoever the key policy allows kms:RetireGrant (AWS: the account).
    const std::vector<std::string> names = c.who.PolicyNames();
    if (!g.retiring.empty() && Answers(names, g.retiring)) return std::nullopt;
    if (g.Allows(names, "RetireGrant", {}, Now())) return std::nullopt;
    const std::string arn = KeyArn(key.record.key_id);
    if (key.policy.Allows(c.who, "kms:RetireGrant", arn, Facts(c, {}))) return std::nullopt;
    return Error{"AccessDeniedException",
                 "User: " + c.who.PrimaryName() + " is not authorized to perform: "
                 "kms:RetireGrant on grant " + g.grant_id + " of " + arn +
                 " (only its retiring principal, its grantee if the grant allows RetireGrant, "
                 "or a principal the key policy allows kms:RetireGrant)"};
  });
}

KmsService::Outcome KmsService::RevokeGrant(Call& c) {
  std::string ref, grant_id;
  KMS_TRY(c.req.String("KeyId", true, &ref));
  KMS_TRY(c.req.String("GrantId", true, &grant_id));
  if (!ValidGrantId(grant_id)) return InvalidGrantId(grant_id);
  return RemoveGrant(c, ref, grant_id, [&](const KeyEntry& key, const Grant&) {
    return Authorize(c, key, "kms:RevokeGrant");
  });
}

void KmsService::RemoveExpiredGrants() {
  Principal service;
  service.kind = Principal::Kind::kService;
  const int64_t now = Now();
  for (const auto& entry : store_->AllKeys()) {
    if (std::none_of(entry->record.grants.begin(), entry->record.grants.end(),
                     [&](const Grant& g) { return g.expired(now); })) {
      continue;
    }
    auto lock = store_->LockForWrite();
    auto current = store_->FindKey(entry->record.key_id);
    if (!current) continue;
    KeyRecord r = current->record;
    nlohmann::ordered_json ids = nlohmann::ordered_json::array();
    for (const Grant& g : r.grants) {
      if (g.expired(now)) ids.push_back(g.grant_id);
    }
    if (r.RemoveExpiredGrants(now) == 0) continue;
    Call c(service);
    c.op = "ExpireGrants";
    c.key_id = r.key_id;
    c.extra["grant_ids"] = ids;
    KeyStore::Change change;
    change.put_records.push_back(std::move(r));
    (void)CommitWithAudit(c, change);  // failed: the grants still allow nothing; retried
  }
}

}  // namespace envelope::keyservice
