// CreateCustomKeyStore, DescribeCustomKeyStores, ConnectCustomKeyStore,
// DisconnectCustomKeyStore, DeleteCustomKeyStore and UpdateCustomKeyStore,
// for PKCS#11 tokens standing in for CloudHSM clusters
// (custom_key_store.h; docs/KEYSERVICE.md, "Custom key stores").
//
// AWS governs these with IAM permissions only; here only root (and the
// admin uid) may call them, as for the other administrative extensions.
#include <algorithm>

#include <spdlog/spdlog.h>

#include "core/crypto/secret_bytes.h"
#include "keyservice/kms_call.h"
#include "keyservice/kms_paginate.h"

namespace envelope::keyservice {

using json = nlohmann::json;

namespace {

// AWS's limit of custom key stores per account and Region.
constexpr size_t kMaxCustomKeyStores = 10;

std::optional<KmsError> Length(const KmsRequest& req, const char* field, const std::string& v,
                                 size_t min, size_t max) {
  if (req.Has(field) && (v.size() < min || v.size() > max)) {
    return KmsRequest::Invalid(field, "Member must have length between " + std::to_string(min) +
                                          " and " + std::to_string(max));
  }
  return std::nullopt;
}

void CleanseString(std::string& s) {
  crypto::Cleanse(MutableByteView(reinterpret_cast<uint8_t*>(s.data()), s.size()));
}

// The KeyStorePassword of a request, moved into the secure heap; the copies
// in the parsed request are wiped.
std::optional<KmsError> TakePassword(KmsRequest& req, nlohmann::json& in, bool required,
                                       std::optional<crypto::SecretBytes>* out) {
  std::string text;
  auto wipe = [&] {
    CleanseString(text);
    if (in.contains("KeyStorePassword") && in["KeyStorePassword"].is_string()) {
      CleanseString(in["KeyStorePassword"].get_ref<std::string&>());
    }
  };
  if (auto e = req.String("KeyStorePassword", required, &text)) {
    wipe();
    return e;
  }
  if (auto e = Length(req, "KeyStorePassword", text, 7, 32)) {
    wipe();
    return e;
  }
  if (req.Has("KeyStorePassword")) {
    auto pin = crypto::SecretBytes::CopyOf(AsBytes(text));
    wipe();
    if (!pin.ok()) return KmsError{"KMSInternalException", pin.status().message()};
    *out = std::move(*pin);
  }
  return std::nullopt;
}

// The record `id` of `records`, or null.
CustomKeyStoreRecord* FindRecord(std::vector<CustomKeyStoreRecord>& records,
                                 const std::string& id) {
  auto it = std::find_if(records.begin(), records.end(), [&](const auto& r) { return r.id == id; });
  return it == records.end() ? nullptr : &*it;
}

}  // namespace

std::optional<KmsService::Error> KmsService::CommitCustomKeyStores(
    Call& c, std::vector<CustomKeyStoreRecord> records, KeyStore::Change change) {
  change.put_meta.emplace_back(kCustomKeyStoresMeta, CustomKeyStoresToJson(records));
  KMS_TRY(CommitWithAudit(c, change));
  custom_key_stores_->SetRecords(std::move(records));
  return std::nullopt;
}

Status KmsService::StartCustomKeyStores() {
  ENVELOPE_ASSIGN_OR_RETURN(std::optional<std::string> text, store_->GetMeta(kCustomKeyStoresMeta));
  if (!text) return Status::Ok();
  ENVELOPE_ASSIGN_OR_RETURN(std::vector<CustomKeyStoreRecord> records,
                            CustomKeyStoresFromJson(*text));
  custom_key_stores_->SetRecords(records);
  for (const CustomKeyStoreRecord& r : records) {
    if (!r.connect_wanted) continue;
    ENVELOPE_ASSIGN_OR_RETURN(std::optional<crypto::SecretBytes> pin,
                              store_->GetSecret(PinSecretName(r.id)));
    if (!pin) return Status::Corruption("custom key store " + r.id + " has lost its password");
    (void)custom_key_stores_->Connect(r, *pin);  // a failure is its state, and logged
  }
  return Status::Ok();
}

void KmsService::DestroyTokenKeys(const KeyRecord& r, const std::vector<uint32_t>& versions) const {
  for (uint32_t v : versions) {
    Status s = custom_key_stores_->DestroyKey(r.custom_key_store_id, r.key_id, v);
    if (!s.ok() && s.code() != StatusCode::kNotFound) {
      // The version is gone from the store either way; what is left on the
      // token opens nothing the service still knows.
      spdlog::warn("custom key store {}: token key {} could not be destroyed: {}",
                   r.custom_key_store_id, TokenKeyLabel(r.key_id, v), s.ToString());
    }
  }
}

std::optional<KmsService::Error> KmsService::BeginStoreEdit(Call& c, StoreEdit* edit) {
  if (!IsAdmin(c)) return Error{"AccessDeniedException", "only root may manage custom key stores"};
  KMS_TRY(c.req.String("CustomKeyStoreId", true, &edit->id));
  c.extra["custom_key_store_id"] = edit->id;
  edit->lock = store_->LockForWrite();
  edit->records = custom_key_stores_->Records();
  edit->record = FindRecord(edit->records, edit->id);
  if (edit->record == nullptr) {
    return Error{"CustomKeyStoreNotFoundException", "no custom key store " + edit->id};
  }
  return std::nullopt;
}

std::optional<KmsService::Error> KmsService::RequireDisconnected(const std::string& id) const {
  const std::string state = custom_key_stores_->StateOf(id).connection;
  if (state == "DISCONNECTED") return std::nullopt;
  return Error{"CustomKeyStoreInvalidStateException",
               "custom key store " + id + " is " + state + ": disconnect it first"};
}

KmsService::Outcome KmsService::CreateCustomKeyStore(Call& c) {
  if (!IsAdmin(c)) return Error{"AccessDeniedException", "only root may manage custom key stores"};
  std::string name, cluster, anchor, type;
  std::optional<crypto::SecretBytes> pin;
  KMS_TRY(TakePassword(c.req, c.in, false, &pin));
  KMS_TRY(c.req.String("CustomKeyStoreName", true, &name));
  KMS_TRY(c.req.String("CloudHsmClusterId", false, &cluster));
  KMS_TRY(c.req.String("TrustAnchorCertificate", false, &anchor));
  KMS_TRY(c.req.String("CustomKeyStoreType", false, &type));
  KMS_TRY(Length(c.req, "CustomKeyStoreName", name, 1, 256));
  KMS_TRY(Length(c.req, "CloudHsmClusterId", cluster, 19, 24));
  KMS_TRY(Length(c.req, "TrustAnchorCertificate", anchor, 1, 5000));
  if (!type.empty() && type != "AWS_CLOUDHSM") {
    return Error{"UnsupportedOperationException",
                 "only CustomKeyStoreType AWS_CLOUDHSM (a PKCS#11 token) is supported"};
  }
  if (cluster.empty() || !pin) {
    return Error{"ValidationException",
                 "an AWS_CLOUDHSM key store needs CloudHsmClusterId and KeyStorePassword"};
  }
  if (!custom_key_stores_->HasCluster(cluster)) {
    return Error{"CloudHsmClusterNotFoundException",
                 "no cluster " + cluster + " is attached to this envelope-keyd (--hsm-cluster)"};
  }
  auto lock = store_->LockForWrite();
  std::vector<CustomKeyStoreRecord> records = custom_key_stores_->Records();
  for (const auto& r : records) {
    if (r.name == name) {
      return Error{"CustomKeyStoreNameInUseException",
                   "a custom key store is already named " + name};
    }
    if (r.cluster_id == cluster) {
      return Error{"CloudHsmClusterInUseException",
                   "cluster " + cluster + " already backs custom key store " + r.id};
    }
  }
  if (records.size() >= kMaxCustomKeyStores) {
    return Error{"LimitExceededException", "there are already " +
                                               std::to_string(kMaxCustomKeyStores) +
                                               " custom key stores"};
  }
  CustomKeyStoreRecord r{NewCustomKeyStoreId(), name, cluster, anchor, Now(), false};
  c.extra["custom_key_store_id"] = r.id;
  c.extra["cloud_hsm_cluster_id"] = cluster;
  KeyStore::Change change;
  change.put_secrets.emplace_back(PinSecretName(r.id),
                                  std::make_shared<const crypto::SecretBytes>(std::move(*pin)));
  records.push_back(r);
  KMS_TRY(CommitCustomKeyStores(c, std::move(records), std::move(change)));
  return json{{"CustomKeyStoreId", r.id}};
}

KmsService::Outcome KmsService::DescribeCustomKeyStores(Call& c) {
  if (!IsAdmin(c)) return Error{"AccessDeniedException", "only root may manage custom key stores"};
  std::string id, name;
  KMS_TRY(c.req.String("CustomKeyStoreId", false, &id));
  KMS_TRY(c.req.String("CustomKeyStoreName", false, &name));
  if (c.req.Has("CustomKeyStoreId") && c.req.Has("CustomKeyStoreName")) {
    return Error{"ValidationException", "give CustomKeyStoreId or CustomKeyStoreName, not both"};
  }
  std::vector<CustomKeyStoreRecord> records = custom_key_stores_->Records();
  if (c.req.Has("CustomKeyStoreId") || c.req.Has("CustomKeyStoreName")) {
    std::erase_if(records, [&](const CustomKeyStoreRecord& r) {
      return c.req.Has("CustomKeyStoreId") ? r.id != id : r.name != name;
    });
    if (records.empty()) {
      return Error{"CustomKeyStoreNotFoundException",
                   "no custom key store " + (id.empty() ? "named " + name : id)};
    }
  }
  bool truncated = false;
  std::string marker;
  KMS_TRY(Paginate(c.req, &records, [](const CustomKeyStoreRecord& r) { return r.id; },
                   &truncated, &marker));
  json list = json::array();
  for (const CustomKeyStoreRecord& r : records) {
    const CustomKeyStores::State state = custom_key_stores_->StateOf(r.id);
    json entry = {{"CustomKeyStoreId", r.id},
                  {"CustomKeyStoreName", r.name},
                  {"CloudHsmClusterId", r.cluster_id},
                  {"ConnectionState", state.connection},
                  {"CreationDate", r.creation_date},
                  {"CustomKeyStoreType", "AWS_CLOUDHSM"}};
    if (!r.trust_anchor.empty()) entry["TrustAnchorCertificate"] = r.trust_anchor;
    if (!state.error_code.empty()) entry["ConnectionErrorCode"] = state.error_code;
    list.push_back(std::move(entry));
  }
  return PageFields(json{{"CustomKeyStores", list}}, truncated, marker);
}

KmsService::Outcome KmsService::ConnectCustomKeyStore(Call& c) {
  StoreEdit edit;
  KMS_TRY(BeginStoreEdit(c, &edit));
  const std::string& id = edit.id;
  CustomKeyStoreRecord* record = edit.record;
  const CustomKeyStores::State before = custom_key_stores_->StateOf(id);
  if (before.connection == "FAILED") {
    return Error{"CustomKeyStoreInvalidStateException",
                 "custom key store " + id + " is FAILED (" + before.error_code +
                     "): disconnect it (DisconnectCustomKeyStore), then connect it"};
  }
  if (before.connection != "CONNECTED") {
    auto pin = store_->GetSecret(PinSecretName(id));
    if (!pin.ok() || !*pin) {
      return Error{"KMSInternalException", "the custom key store's password cannot be read", 500};
    }
    const CustomKeyStores::State after = custom_key_stores_->Connect(*record, **pin);
    c.extra["connection_state"] = after.connection;
    if (!after.error_code.empty()) c.extra["connection_error_code"] = after.error_code;
  }
  // As AWS: the answer is empty either way; DescribeCustomKeyStores shows
  // CONNECTED, or FAILED with the reason.
  record->connect_wanted = true;
  KMS_TRY(CommitCustomKeyStores(c, std::move(edit.records), {}));
  return json::object();
}

KmsService::Outcome KmsService::DisconnectCustomKeyStore(Call& c) {
  StoreEdit edit;
  KMS_TRY(BeginStoreEdit(c, &edit));
  const std::string& id = edit.id;
  CustomKeyStoreRecord* record = edit.record;
  custom_key_stores_->Disconnect(id);
  record->connect_wanted = false;
  KMS_TRY(CommitCustomKeyStores(c, std::move(edit.records), {}));
  return json::object();
}

KmsService::Outcome KmsService::DeleteCustomKeyStore(Call& c) {
  StoreEdit edit;
  KMS_TRY(BeginStoreEdit(c, &edit));
  const std::string& id = edit.id;
  CustomKeyStoreRecord* record = edit.record;
  KMS_TRY(RequireDisconnected(id));
  for (const auto& k : store_->AllKeys()) {
    if (k->record.on_token() && k->record.custom_key_store_id == id) {
      return Error{"CustomKeyStoreHasCMKsException",
                   "custom key store " + id + " still holds keys (" + KeyArn(k->record.key_id) +
                       "): schedule their deletion and wait for it first"};
    }
  }
  edit.records.erase(edit.records.begin() + (record - edit.records.data()));
  KeyStore::Change change;
  change.delete_secrets.push_back(PinSecretName(id));
  KMS_TRY(CommitCustomKeyStores(c, std::move(edit.records), std::move(change)));
  return json::object();
}

KmsService::Outcome KmsService::UpdateCustomKeyStore(Call& c) {
  if (!IsAdmin(c)) return Error{"AccessDeniedException", "only root may manage custom key stores"};
  std::string new_name, cluster;
  std::optional<crypto::SecretBytes> pin;
  KMS_TRY(TakePassword(c.req, c.in, false, &pin));
  KMS_TRY(c.req.String("NewCustomKeyStoreName", false, &new_name));
  KMS_TRY(c.req.String("CloudHsmClusterId", false, &cluster));
  KMS_TRY(Length(c.req, "NewCustomKeyStoreName", new_name, 1, 256));
  KMS_TRY(Length(c.req, "CloudHsmClusterId", cluster, 19, 24));
  StoreEdit edit;
  KMS_TRY(BeginStoreEdit(c, &edit));
  const std::string& id = edit.id;
  CustomKeyStoreRecord* record = edit.record;
  KMS_TRY(RequireDisconnected(id));
  for (const auto& r : edit.records) {
    if (r.id == id) continue;
    if (!new_name.empty() && r.name == new_name) {
      return Error{"CustomKeyStoreNameInUseException",
                   "a custom key store is already named " + new_name};
    }
    if (!cluster.empty() && r.cluster_id == cluster) {
      return Error{"CloudHsmClusterInUseException",
                   "cluster " + cluster + " already backs custom key store " + r.id};
    }
  }
  if (!cluster.empty() && !custom_key_stores_->HasCluster(cluster)) {
    return Error{"CloudHsmClusterNotFoundException",
                 "no cluster " + cluster + " is attached to this envelope-keyd (--hsm-cluster)"};
  }
  if (!new_name.empty()) record->name = new_name;
  // Another cluster must hold the same keys (a copy of the token, as AWS
  // requires a backup of the same cluster): the next Connect finds out.
  if (!cluster.empty()) record->cluster_id = cluster;
  KeyStore::Change change;
  if (pin) {
    change.put_secrets.emplace_back(PinSecretName(id),
                                    std::make_shared<const crypto::SecretBytes>(std::move(*pin)));
  }
  KMS_TRY(CommitCustomKeyStores(c, std::move(edit.records), std::move(change)));
  return json::object();
}

}  // namespace envelope::keyservice
