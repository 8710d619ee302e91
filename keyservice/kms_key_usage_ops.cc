// GetKeyLastUsage, and the bookkeeping behind it (key_usage.h).
#include "keyservice/kms_call.h"

namespace envelope::keyservice {

using json = nlohmann::json;

Status KmsService::StartKeyUsage() {
  ENVELOPE_ASSIGN_OR_RETURN(std::string start,
                            store_->GetOrCreateMeta(kLastUseTrackingStartMeta,
                                                    [&] { return std::to_string(Now()); }));
  try {
    tracking_start_ = std::stoll(start);
  } catch (const std::exception&) {
    return Status::Corruption("the stored start of key usage tracking does not parse");
  }
  for (const auto& key : store_->AllKeys()) {
    ENVELOPE_ASSIGN_OR_RETURN(std::optional<std::string> text,
                              store_->GetMeta(kLastUseMetaPrefix + key->record.key_id));
    if (!text) continue;
    ENVELOPE_ASSIGN_OR_RETURN(LastUse use, LastUseFromJson(*text));
    usage_.Load(key->record.key_id, std::move(use));
  }
  return Status::Ok();
}

void KmsService::NoteUsage(const Call& c) {
  const std::string_view op = UsageOperationOf(c.op, c.extension);
  if (op.empty() || c.key_id.empty()) return;
  const int64_t now = Now();
  usage_.Note(c.key_id, op, now);
  // ReEncrypt uses two keys (AWS records both).
  if (auto it = c.extra.find("source_key_id"); it != c.extra.end() && it->is_string()) {
    usage_.Note(it->get<std::string>(), op, now);
  }
}

void KmsService::FlushKeyUsage() {
  auto dirty = usage_.TakeDirty();
  if (dirty.empty()) return;
  KeyStore::Change change;
  auto lock = store_->LockForWrite();
  for (const auto& [key_id, use] : dirty) {
    if (!store_->FindKey(key_id)) continue;  // deleted meanwhile
    change.put_meta.emplace_back(kLastUseMetaPrefix + key_id, LastUseToJson(use));
  }
  // Bookkeeping, not a change anyone asked for: no audit record of its own
  // (each use has one).
  Status s = store_->Commit(change, [] { return Status::Ok(); });
  if (!s.ok()) usage_.Restore(dirty);
}

KmsService::Outcome KmsService::GetKeyLastUsage(Call& c) {
  std::string ref;
  KMS_TRY(c.req.String("KeyId", true, &ref));
  std::optional<Error> err;
  auto key = Resolve(c, ref, false, &err);
  KMS_TRY(err);
  KMS_TRY(Authorize(c, *key, "kms:GetKeyLastUsage"));
  json out = {{"KeyId", key->record.key_id},
              {"KeyCreationDate", key->record.creation_date},
              {"TrackingStartDate", tracking_start_}};
  if (auto use = usage_.Find(key->record.key_id)) {
    out["KeyLastUsage"] = {{"Operation", use->operation}, {"Timestamp", use->timestamp}};
  } else {
    out["KeyLastUsage"] = json::object();
  }
  return out;
}

}  // namespace envelope::keyservice
