// The extension ReEncryptBatch: ReEncrypt for many blobs in one request
// (docs/KEYSERVICE.md, "ReEncryptBatch"), for a volume rotation that would
// otherwise pay a round trip, an HTTP exchange and a JSON document per
// file.
//
// Each item gets what ReEncrypt would give it: its blob is opened under its
// own SourceKeyId pin and SourceEncryptionContext, with kms:ReEncryptFrom
// (and the Decrypt-deny rule) checked on the blob's own key, and it has an
// audit record of its own. The destination key is resolved and authorised
// (kms:ReEncryptTo) once per request: one caller, one key and one instant
// give one answer. An item that fails fails alone, with its AWS error type
// in its result; a malformed request fails whole, before any item is
// opened.
#include "core/base/base64.h"
#include "keyservice/json_output.h"
#include "keyservice/kms_call.h"

namespace envelope::keyservice {

using json = nlohmann::json;

namespace {

struct BatchItem {
  Bytes blob;
  std::string source_ref;
  EncryptionContext source_context;
  EncryptionContext destination_context;
};

// The error of a field of item `i`, naming the item.
KmsError InItem(size_t i, KmsError e) {
  e.message = "Items[" + std::to_string(i) + "]: " + e.message;
  return e;
}

std::optional<KmsError> ParseItems(const json& in, std::vector<BatchItem>* out) {
  auto items = in.find("Items");
  if (items == in.end() || items->is_null()) return KmsRequest::Missing("Items");
  if (!items->is_array()) {
    return KmsError{"SerializationException", "field Items must be an array of objects"};
  }
  if (items->empty() || items->size() > kMaxReEncryptsPerRequest) {
    return KmsRequest::Invalid("Items", "Member must have length between 1 and " +
                                            std::to_string(kMaxReEncryptsPerRequest));
  }
  out->reserve(items->size());
  for (size_t i = 0; i < items->size(); ++i) {
    const json& v = (*items)[i];
    if (!v.is_object()) {
      return InItem(i, KmsError{"SerializationException", "an item must be an object"});
    }
    KmsRequest req(v);
    BatchItem item;
    if (auto e = req.Blob("CiphertextBlob", true, &item.blob)) return InItem(i, *e);
    // Required, unlike ReEncrypt's: every blob of a batch is pinned.
    if (auto e = req.String("SourceKeyId", true, &item.source_ref)) return InItem(i, *e);
    if (auto e = req.Context("SourceEncryptionContext", &item.source_context)) return InItem(i, *e);
    if (auto e = req.Context("DestinationEncryptionContext", &item.destination_context)) {
      return InItem(i, *e);
    }
    if (item.blob.empty() || item.blob.size() > kMaxCiphertextInBytes) {
      return InItem(i, KmsRequest::Invalid("CiphertextBlob",
                                           "Member must have length between 1 and 6144"));
    }
    if (item.source_ref.empty()) {
      return InItem(i, KmsRequest::Invalid("SourceKeyId", "Member must have length at least 1"));
    }
    out->push_back(std::move(item));
  }
  return std::nullopt;
}

}  // namespace

KmsService::Outcome KmsService::ReEncryptBatch(Call& c) {
  std::string dest_ref;
  std::vector<BatchItem> items;
  KMS_TRY(c.req.String("DestinationKeyId", true, &dest_ref));
  KMS_TRY(ParseItems(c.in, &items));
  c.extra["batch_size"] = items.size();
  std::vector<EncryptionContext> destination_contexts;
  destination_contexts.reserve(items.size());
  for (const BatchItem& item : items) destination_contexts.push_back(item.destination_context);
  auto sealing = KeyForSealing(c, dest_ref, "kms:ReEncryptTo", destination_contexts);
  if (auto* e = std::get_if<Error>(&sealing)) return *e;
  SealingKey& dest = std::get<SealingKey>(sealing);

  json results = json::array();
  // Every item's record starts with the same caller and operation:
  // serialised once.
  std::string caller = DumpJson(AuditCaller(c));
  caller = caller.substr(1, caller.size() - 2) + ",";
  std::vector<std::string> records;
  records.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const BatchItem& item = items[i];
    // The item's own record: what ReEncrypt's would say, and where in the
    // batch it was.
    Call one(c.who);
    one.op = c.op;
    one.extension = true;
    one.context = item.destination_context;
    one.has_context = true;
    auto opened = OpenCiphertext(one, item.blob, item.source_ref, "kms:ReEncryptFrom",
                                 item.source_context);
    std::optional<Error> error;
    if (auto* e = std::get_if<Error>(&opened)) {
      error = *e;
    } else {
      const OpenedBlob& o = std::get<OpenedBlob>(opened);
      one.extra["source_key_id"] = one.key_id;
      one.extra["source_key_version"] = one.key_version;
      one.extra["source_encryption_context"] = item.source_context;
      one.key_id = dest.key->record.key_id;
      one.key_version = dest.version;
      auto sealed = dest.Seal(item.destination_context, o.plaintext.view());
      if (sealed.ok()) {
        results.push_back({{"CiphertextBlob", Base64Encode(*sealed)},
                           {"SourceKeyId", KeyArn(o.key->record.key_id)}});
      } else {
        error = SealError(sealed.status());
      }
    }
    if (error) results.push_back({{"ErrorType", error->type}, {"ErrorMessage", error->message}});
    one.extra["batch_item"] = i;
    one.extra["batch_size"] = items.size();
    const std::string facts = DumpJson(AuditFacts(one, error ? &*error : nullptr));
    records.push_back(caller + facts.substr(1, facts.size() - 2) + ",");
  }
  // Every item's record, or none (fail closed: no result leaves without
  // its record).
  Status s = audit_->AppendFields(std::move(records));
  if (!s.ok()) {
    return Error{"KMSInternalException", "the audit records could not be written", 500};
  }
  c.audited = true;
  return json{{"KeyId", KeyArn(dest.key->record.key_id)}, {"Results", std::move(results)}};
}

}  // namespace envelope::keyservice
