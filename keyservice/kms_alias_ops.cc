// Aliases: CreateAlias, UpdateAlias, DeleteAlias, ListAliases, each in the
// caller's own namespace (docs/KEYSERVICE.md, "Aliases").
#include <algorithm>
#include <cctype>

#include "keyservice/kms_call.h"
#include "keyservice/kms_paginate.h"

namespace envelope::keyservice {

using json = nlohmann::json;

namespace {

// ^alias/[a-zA-Z0-9/_-]+$, at most 256 characters, not alias/aws/ (AWS's
// reserved prefix).
bool ValidAliasName(const std::string& name) {
  constexpr std::string_view kPrefix = "alias/";
  if (name.size() > 256 || name.size() <= kPrefix.size() || name.rfind(kPrefix, 0) != 0 ||
      name.rfind("alias/aws/", 0) == 0) {
    return false;
  }
  return std::all_of(name.begin() + kPrefix.size(), name.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '/' || c == '_' || c == '-';
  });
}

}  // namespace

KmsService::Outcome KmsService::CreateAlias(Call& c) {
  std::string name, target;
  KMS_TRY(c.req.String("AliasName", true, &name));
  KMS_TRY(c.req.String("TargetKeyId", true, &target));
  c.extra["alias"] = name;
  if (!ValidAliasName(name)) {
    return Error{"ValidationException",
                 "1 validation error detected: Value '" + name +
                     "' at 'aliasName' failed to satisfy constraint: Member must satisfy "
                     "regular expression pattern: ^alias/[a-zA-Z0-9/_-]+$ (and not alias/aws/)"};
  }
  auto lock = store_->LockForWrite();
  std::optional<Error> err;
  auto key = Resolve(c, target, false, &err);
  KMS_TRY(err);
  KMS_TRY(Authorize(c, *key, "kms:CreateAlias"));
  if (key->record.key_state == kStatePendingDeletion) {
    return Error{"KMSInvalidStateException", KeyArn(key->record.key_id) + " is pending deletion."};
  }
  const std::string owner = c.who.OwnerId();
  if (owner.empty()) return Error{"AccessDeniedException", "this caller cannot own aliases"};
  if (store_->FindAlias(owner, name)) {
    return Error{"AlreadyExistsException", "An alias with the name " + name + " already exists"};
  }
  KeyStore::Change change;
  change.put_aliases.push_back({name, key->record.key_id, Now(), owner});
  KMS_TRY(CommitWithAudit(c, change));
  return json::object();
}

KmsService::Outcome KmsService::UpdateAlias(Call& c) {
  std::string name, target;
  KMS_TRY(c.req.String("AliasName", true, &name));
  KMS_TRY(c.req.String("TargetKeyId", true, &target));
  c.extra["alias"] = name;
  auto lock = store_->LockForWrite();
  auto alias = store_->FindAlias(c.who.OwnerId(), name);
  if (!alias) return Error{"NotFoundException", "Alias " + name + " is not found."};
  std::optional<Error> err;
  auto old_key = Resolve(c, alias->key_id, false, &err);
  KMS_TRY(err);
  KMS_TRY(Authorize(c, *old_key, "kms:UpdateAlias"));
  auto new_key = Resolve(c, target, false, &err);
  KMS_TRY(err);
  KMS_TRY(Authorize(c, *new_key, "kms:UpdateAlias"));
  c.extra["previous_key_id"] = old_key->record.key_id;
  KeyStore::Change change;
  change.put_aliases.push_back({name, new_key->record.key_id, alias->creation_date, alias->owner});
  KMS_TRY(CommitWithAudit(c, change));
  return json::object();
}

KmsService::Outcome KmsService::DeleteAlias(Call& c) {
  std::string name;
  KMS_TRY(c.req.String("AliasName", true, &name));
  c.extra["alias"] = name;
  auto lock = store_->LockForWrite();
  auto alias = store_->FindAlias(c.who.OwnerId(), name);
  if (!alias) {
    // An ownerless alias from before namespaces: its key's administrators
    // may delete it (it resolves for nobody, but should not linger).
    for (const AliasEntry& a : store_->AllAliases()) {
      if (a.owner.empty() && a.name == name) alias = a;
    }
  }
  if (!alias) return Error{"NotFoundException", "Alias " + name + " is not found."};
  std::optional<Error> err;
  auto key = Resolve(c, alias->key_id, false, &err);
  KMS_TRY(err);
  KMS_TRY(Authorize(c, *key, "kms:DeleteAlias"));
  KeyStore::Change change;
  change.delete_aliases.push_back(*alias);
  KMS_TRY(CommitWithAudit(c, change));
  return json::object();
}

KmsService::Outcome KmsService::ListAliases(Call& c) {
  std::string ref;
  KMS_TRY(c.req.String("KeyId", false, &ref));
  // The caller's own namespace, as AWS lists one account's aliases.
  auto aliases = store_->AllAliases();
  const std::string owner = c.who.OwnerId();
  std::erase_if(aliases, [&](const AliasEntry& a) { return owner.empty() || a.owner != owner; });
  if (c.req.Has("KeyId")) {
    std::optional<Error> err;
    auto key = Resolve(c, ref, false, &err);
    KMS_TRY(err);
    std::erase_if(aliases, [&](const AliasEntry& a) { return a.key_id != key->record.key_id; });
  }
  bool truncated = false;
  std::string marker;
  KMS_TRY(Paginate(c.req, &aliases, [](const AliasEntry& a) { return a.name; },
                   &truncated, &marker));
  json list = json::array();
  for (const auto& a : aliases) {
    list.push_back({{"AliasName", a.name},
                    {"AliasArn", "arn:aws:kms:" + options_.region + ":" + options_.account + ":" + a.name},
                    {"TargetKeyId", a.key_id},
                    {"CreationDate", a.creation_date},
                    {"LastUpdatedDate", a.creation_date}});
  }
  return PageFields(json{{"Aliases", list}}, truncated, marker);
}

// The shape of every single-key mutation: under the writer lock, resolve the
// key by id or ARN, authorize `action`, let `edit` change a copy of the

}  // namespace envelope::keyservice
