// Key policies: GetKeyPolicy, PutKeyPolicy and ListKeyPolicies (one policy
// per key, named "default", as in AWS). The policy language is
// keyservice/key_policy.h.
#include "keyservice/kms_call.h"
#include "keyservice/kms_paginate.h"

namespace envelope::keyservice {

using json = nlohmann::json;

KmsService::Outcome KmsService::GetKeyPolicy(Call& c) {
  std::string ref, name = "default";
  KMS_TRY(c.req.String("KeyId", true, &ref));
  KMS_TRY(c.req.String("PolicyName", false, &name));
  std::optional<Error> err;
  auto key = Resolve(c, ref, false, &err);
  KMS_TRY(err);
  KMS_TRY(Authorize(c, *key, "kms:GetKeyPolicy"));
  if (name != "default") return Error{"NotFoundException", "No such policy: " + name};
  return json{{"Policy", key->record.policy}, {"PolicyName", "default"}};
}

KmsService::Outcome KmsService::PutKeyPolicy(Call& c) {
  std::string text, name = "default";
  bool bypass = false;
  KMS_TRY(c.req.String("Policy", true, &text));
  KMS_TRY(c.req.String("PolicyName", false, &name));
  KMS_TRY(c.req.Bool("BypassPolicyLockoutSafetyCheck", &bypass));
  if (name != "default") {
    return Error{"ValidationException", "PolicyName must be \"default\""};
  }
  auto policy = KeyPolicy::Parse(text);
  if (!policy.ok()) return Error{"MalformedPolicyDocumentException", policy.status().message()};
  auto mutated = MutateKey(
      c, "kms:PutKeyPolicy",
      [&]([[maybe_unused]] KeyRecord& r, [[maybe_unused]] KeyStore::Change& change,
          [[maybe_unused]] const KeyEntry& current) -> std::optional<Error> {
    if (!bypass && !policy->Allows(c.who, "kms:PutKeyPolicy", KeyArn(r.key_id))) {
      return Error{"MalformedPolicyDocumentException",
                   "The new key policy will not allow you to update the key policy in the "
                   "future (set BypassPolicyLockoutSafetyCheck to override)."};
    }
    r.policy = text;
    return std::nullopt;
  });
  if (auto* e = std::get_if<Error>(&mutated)) return *e;
  return json::object();
}

KmsService::Outcome KmsService::ListKeyPolicies(Call& c) {
  std::string ref;
  KMS_TRY(c.req.String("KeyId", true, &ref));
  std::optional<Error> err;
  auto key = Resolve(c, ref, false, &err);
  KMS_TRY(err);
  KMS_TRY(Authorize(c, *key, "kms:ListKeyPolicies"));
  std::vector<std::string> names = {"default"};
  bool truncated = false;
  std::string marker;
  KMS_TRY(Paginate(c.req, &names, [](const std::string& n) { return n; }, &truncated, &marker));
  return PageFields(json{{"PolicyNames", names}}, truncated, marker);
}

}  // namespace envelope::keyservice
