#include "keyservice/kms_service.h"

#include <chrono>

#include "keyservice/json_output.h"
#include "keyservice/key_spec.h"
#include "keyservice/kms_call.h"
#include "keyservice/standard_api.h"
#include "kms/operations.h"

namespace envelope::keyservice {

using json = nlohmann::json;

KmsService::KmsService(KeyStore* store, AuditLog* audit, KmsServiceOptions options)
    : store_(store),
      audit_(audit),
      options_(std::move(options)),
      custom_key_stores_(options_.custom_key_stores
                             ? options_.custom_key_stores
                             : std::make_shared<CustomKeyStores>(
                                   std::map<std::string, std::string>())),
      peers_(options_.peers_file),
      key_pair_limiter_(options_.key_pair_burst, options_.key_pairs_per_second,
                        [] { return std::chrono::steady_clock::now(); }) {
  if (!options_.root_key_file.empty()) {
    root_source_ = RootKeySource{RootKeyKind::kKeyFile, options_.root_key_file, ""};
  } else if (!options_.root_key_uri.empty()) {
    root_source_ = RootKeySource{RootKeyKind::kToken, "", options_.root_key_uri};
  } else if (options_.root_key_from_passphrase) {
    root_source_ = RootKeySource{RootKeyKind::kPassphrase, "", ""};
  }
}

std::optional<KmsService::Error> KmsService::ThrottleKeyPairs(const Call& c) {
  if (key_pair_limiter_.Allow(c.who.OwnerId())) return std::nullopt;
  return Error{"ThrottlingException",
               "key pairs are made at most " + std::to_string(options_.key_pairs_per_second) +
                   " per second per principal (burst " +
                   std::to_string(options_.key_pair_burst) + "): retry later"};
}

int64_t KmsService::Now() const {
  auto now = std::chrono::system_clock::now() + options_.clock_offset;
  return std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
}

std::string KmsService::KeyArn(const std::string& key_id) const {
  return "arn:aws:kms:" + options_.region + ":" + options_.account + ":key/" + key_id;
}

KmsResponse KmsService::Handle(const Principal& who, std::string_view target,
                               std::string_view body) {
  Call call(who);
  Outcome outcome;
  constexpr std::string_view kTrent = "TrentService.";
  constexpr std::string_view kExtension = "EnvelopeKeyService.";
  if (target.rfind(kTrent, 0) == 0) {
    call.op = std::string(target.substr(kTrent.size()));
  } else if (target.rfind(kExtension, 0) == 0 && !options_.standard_only) {
    call.op = std::string(target.substr(kExtension.size()));
    call.extension = true;
  } else {
    // Unknown, and in standard-only mode the extensions too: their whole
    // target is the operation, which Dispatch knows nothing of.
    call.op = std::string(target);
  }

  json parsed = body.empty() ? json::object() : json::parse(body, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    outcome = Error{"SerializationException", "request body is not a JSON object"};
  } else {
    call.in = std::move(parsed);
    outcome = Dispatch(call);
  }

  KmsResponse response;
  if (auto* err = std::get_if<Error>(&outcome)) {
    if (!call.audited) (void)AppendAudit(call, err);  // best effort: already failing
    response.http_status = err->http_status;
    response.body = DumpJson(json{{"__type", err->type}, {"message", err->message}});
    return response;
  }
  if (!call.audited) {
    Status s = AppendAudit(call, nullptr);
    if (!s.ok()) {
      // Fail closed: no answer leaves without its audit record.
      response.http_status = 500;
      response.body = DumpJson(json{{"__type", "KMSInternalException"},
                                    {"message", "the audit record could not be written"}});
      return response;
    }
  }
  NoteUsage(call);
  json& answer = std::get<json>(outcome);
  if (options_.standard_only) StripToStandardApi(call.op, &answer);
  response.body = DumpJson(answer);
  response.sensitive = call.sensitive_response;
  return response;
}

void KmsService::AuditRejected(std::string_view target, const Origin& origin,
                               const std::string& error_type, const std::string& message) {
  Principal anonymous;
  anonymous.kind = Principal::Kind::kAnonymous;
  anonymous.origin = origin;
  Call c(anonymous);
  c.op = std::string(target);
  Error err{error_type, message};
  (void)AppendAudit(c, &err);
}

// One route per row of kms::Operations(): adding an operation is a row
// there and a line here (OperationTableTest checks that the two agree).
std::span<const KmsService::Route> KmsService::Routes() {
  using S = KmsService;
  static constexpr Route kRoutes[] = {
      {"CreateKey", false, [](S& s, Call& c) { return s.CreateKey(c); }},
      {"DescribeKey", false, [](S& s, Call& c) { return s.DescribeKey(c); }},
      {"ListKeys", false, [](S& s, Call& c) { return s.ListKeys(c); }},
      {"CreateAlias", false, [](S& s, Call& c) { return s.CreateAlias(c); }},
      {"UpdateAlias", false, [](S& s, Call& c) { return s.UpdateAlias(c); }},
      {"DeleteAlias", false, [](S& s, Call& c) { return s.DeleteAlias(c); }},
      {"ListAliases", false, [](S& s, Call& c) { return s.ListAliases(c); }},
      {"Encrypt", false, [](S& s, Call& c) { return s.Encrypt(c); }},
      {"Decrypt", false, [](S& s, Call& c) { return s.Decrypt(c); }},
      {"ReEncrypt", false, [](S& s, Call& c) { return s.ReEncrypt(c); }},
      {"GenerateDataKey", false, [](S& s, Call& c) { return s.GenerateDataKey(c, true); }},
      {"GenerateDataKeyWithoutPlaintext", false,
       [](S& s, Call& c) { return s.GenerateDataKey(c, false); }},
      {"GenerateRandom", false, [](S& s, Call& c) { return s.GenerateRandom(c); }},
      {"EnableKey", false, [](S& s, Call& c) { return s.SetEnabled(c, true); }},
      {"DisableKey", false, [](S& s, Call& c) { return s.SetEnabled(c, false); }},
      {"ScheduleKeyDeletion", false, [](S& s, Call& c) { return s.ScheduleKeyDeletion(c); }},
      {"CancelKeyDeletion", false, [](S& s, Call& c) { return s.CancelKeyDeletion(c); }},
      {"EnableKeyRotation", false, [](S& s, Call& c) { return s.SetRotation(c, true); }},
      {"DisableKeyRotation", false, [](S& s, Call& c) { return s.SetRotation(c, false); }},
      {"GetKeyRotationStatus", false, [](S& s, Call& c) { return s.GetKeyRotationStatus(c); }},
      {"RotateKeyOnDemand", false, [](S& s, Call& c) { return s.RotateKeyOnDemand(c); }},
      {"ListKeyRotations", false, [](S& s, Call& c) { return s.ListKeyRotations(c); }},
      {"GetKeyPolicy", false, [](S& s, Call& c) { return s.GetKeyPolicy(c); }},
      {"PutKeyPolicy", false, [](S& s, Call& c) { return s.PutKeyPolicy(c); }},
      {"ListKeyPolicies", false, [](S& s, Call& c) { return s.ListKeyPolicies(c); }},
      {"UpdateKeyDescription", false, [](S& s, Call& c) { return s.UpdateKeyDescription(c); }},
      {"GetKeyLastUsage", false, [](S& s, Call& c) { return s.GetKeyLastUsage(c); }},
      {"GetParametersForImport", false,
       [](S& s, Call& c) { return s.GetParametersForImport(c); }},
      {"ImportKeyMaterial", false, [](S& s, Call& c) { return s.ImportKeyMaterial(c); }},
      {"DeleteImportedKeyMaterial", false,
       [](S& s, Call& c) { return s.DeleteImportedKeyMaterial(c); }},
      {"TagResource", false, [](S& s, Call& c) { return s.TagResource(c); }},
      {"UntagResource", false, [](S& s, Call& c) { return s.UntagResource(c); }},
      {"ListResourceTags", false, [](S& s, Call& c) { return s.ListResourceTags(c); }},
      {"CreateCustomKeyStore", false, [](S& s, Call& c) { return s.CreateCustomKeyStore(c); }},
      {"DescribeCustomKeyStores", false,
       [](S& s, Call& c) { return s.DescribeCustomKeyStores(c); }},
      {"ConnectCustomKeyStore", false, [](S& s, Call& c) { return s.ConnectCustomKeyStore(c); }},
      {"DisconnectCustomKeyStore", false,
       [](S& s, Call& c) { return s.DisconnectCustomKeyStore(c); }},
      {"DeleteCustomKeyStore", false, [](S& s, Call& c) { return s.DeleteCustomKeyStore(c); }},
      {"UpdateCustomKeyStore", false, [](S& s, Call& c) { return s.UpdateCustomKeyStore(c); }},
      {"CreateGrant", false, [](S& s, Call& c) { return s.CreateGrant(c); }},
      {"ListGrants", false, [](S& s, Call& c) { return s.ListGrants(c); }},
      {"ListRetirableGrants", false, [](S& s, Call& c) { return s.ListRetirableGrants(c); }},
      {"RetireGrant", false, [](S& s, Call& c) { return s.RetireGrant(c); }},
      {"RevokeGrant", false, [](S& s, Call& c) { return s.RevokeGrant(c); }},
      {"Sign", false, [](S& s, Call& c) { return s.Sign(c); }},
      {"Verify", false, [](S& s, Call& c) { return s.Verify(c); }},
      {"GetPublicKey", false, [](S& s, Call& c) { return s.GetPublicKey(c); }},
      {"GenerateMac", false, [](S& s, Call& c) { return s.GenerateMac(c); }},
      {"VerifyMac", false, [](S& s, Call& c) { return s.VerifyMac(c); }},
      {"DeriveSharedSecret", false, [](S& s, Call& c) { return s.DeriveSharedSecret(c); }},
      {"GenerateDataKeyPair", false, [](S& s, Call& c) { return s.GenerateDataKeyPair(c, true); }},
      {"GenerateDataKeyPairWithoutPlaintext", false,
       [](S& s, Call& c) { return s.GenerateDataKeyPair(c, false); }},
      {"ReplicateKey", false, [](S& s, Call& c) { return s.ReplicateKey(c); }},
      {"UpdatePrimaryRegion", false, [](S& s, Call& c) { return s.UpdatePrimaryRegion(c); }},
      {"ReplicaSync", true, [](S& s, Call& c) { return s.ReplicaSync(c); }},
      {"RetireKeyVersions", true, [](S& s, Call& c) { return s.RetireKeyVersions(c); }},
      {"GenerateDataKeys", true, [](S& s, Call& c) { return s.GenerateDataKeys(c); }},
      {"ReEncryptBatch", true, [](S& s, Call& c) { return s.ReEncryptBatch(c); }},
      {"VerifyAudit", true, [](S& s, Call& c) { return s.VerifyAudit(c); }},
      {"TailAudit", true, [](S& s, Call& c) { return s.TailAudit(c); }},
      {"Backup", true, [](S& s, Call& c) { return s.Backup(c); }},
      {"RotateRootKey", true, [](S& s, Call& c) { return s.RotateRootKey(c); }},
  };
  return kRoutes;
}

std::vector<std::string> KmsService::HandledTargets() {
  std::vector<std::string> out;
  for (const Route& r : Routes()) {
    out.push_back(std::string(r.extension ? kms::kExtensionTargetPrefix : kms::kAwsTargetPrefix) +
                  std::string(r.name));
  }
  return out;
}

KmsService::Outcome KmsService::Dispatch(Call& c) {
  const std::string target =
      std::string(c.extension ? kms::kExtensionTargetPrefix : kms::kAwsTargetPrefix) + c.op;
  if (const kms::Operation* op = kms::FindOperation(target)) {
    KMS_TRY(CheckGrantTokens(c.req));
    // AWS's DryRun checks permissions without acting. Not built: refused,
    // so that a dry run never does the real thing.
    bool dry_run = false;
    KMS_TRY(c.req.Bool("DryRun", &dry_run));
    if (dry_run) {
      return Error{"UnsupportedOperationException",
                   "DryRun is not supported by envelope-keyd: nothing was done"};
    }
    // Recipient asks that the plaintext leave only encrypted to an enclave;
    // answering it in the clear would defeat that.
    if (c.req.Has("Recipient")) {
      return Error{"UnsupportedOperationException",
                   "Recipient (Nitro Enclaves attestation) is not supported by envelope-keyd"};
    }
    for (const Route& r : Routes()) {
      if (r.name == op->name && r.extension == op->extension) return r.run(*this, c);
    }
  }
  return Error{"UnknownOperationException", "unknown operation " + c.op};
}

// KeyId forms: key id, key ARN, and (where AWS allows) alias name and alias
// ARN, all resolved against this service's region and account.
std::shared_ptr<const KeyEntry> KmsService::Resolve(Call& c, const std::string& ref,
                                                    bool aliases_ok,
                                                    std::optional<Error>* error) const {
  const std::string arn_prefix = "arn:aws:kms:" + options_.region + ":" + options_.account + ":";
  std::string rest = ref;
  // kms:RequestAlias is the alias of the key resolved now: ReEncrypt
  // resolves its source, then its destination.
  c.request_alias.clear();
  if (ref.rfind("arn:", 0) == 0) {
    if (ref.rfind(arn_prefix, 0) != 0) {
      *error = Error{"NotFoundException", "Invalid arn " + ref};
      return nullptr;
    }
    rest = ref.substr(arn_prefix.size());
    if (rest.rfind("key/", 0) == 0) {
      rest = rest.substr(4);
    } else if (rest.rfind("alias/", 0) != 0) {
      *error = Error{"NotFoundException", "Invalid arn " + ref};
      return nullptr;
    }
  }
  if (rest.rfind("alias/", 0) == 0) {
    if (!aliases_ok) {
      *error = Error{"NotFoundException", "this operation needs a key id or key ARN, not " + ref};
      return nullptr;
    }
    // Only in the caller's own namespace: an alias another principal made
    // never captures this caller's `alias/NAME` (docs/KEYSERVICE.md,
    // "Aliases"). Another principal's key is named by key id or ARN.
    auto alias = store_->FindAlias(c.who.OwnerId(), rest);
    if (!alias) {
      *error = Error{"NotFoundException", "Alias " + arn_prefix + rest +
                                              " is not found (aliases are per principal; "
                                              "name another principal's key by key id or ARN)."};
      return nullptr;
    }
    rest = alias->key_id;
    c.request_alias = alias->name;
  }
  KeyIdBytes id;
  if (!ParseKeyId(rest, &id)) {
    *error = Error{"NotFoundException", "Invalid keyId '" + ref + "'"};
    return nullptr;
  }
  auto entry = store_->FindKey(FormatKeyId(id));
  if (!entry) {
    *error = Error{"NotFoundException", "Key '" + KeyArn(FormatKeyId(id)) + "' does not exist"};
    return nullptr;
  }
  c.key_id = entry->record.key_id;
  return entry;
}

std::optional<KmsService::Error> KmsService::Authorize(
    Call& c, const KeyEntry& key, std::string_view action,
    std::span<const EncryptionContext> contexts) const {
  const std::string arn = KeyArn(key.record.key_id);
  const KeyPolicy::Decision decision =
      key.policy.Evaluate(c.who, action, arn, Facts(c, contexts));
  if (decision == KeyPolicy::Decision::kAllow) return std::nullopt;
  // Grants allow beside the policy, never against an explicit Deny (AWS).
  if (decision == KeyPolicy::Decision::kImplicitDeny) {
    if (const Grant* g = AllowingGrant(c, key, GrantOperationOf(action), contexts)) {
      NoteGrantUsed(c, *g);
      return std::nullopt;
    }
  }
  return Error{"AccessDeniedException",
               "User: " + c.who.PrimaryName() + " is not authorized to perform: " +
                   std::string(action) + " on resource: " + arn +
                   " because no key policy statement or grant allows it (or a statement "
                   "denies it)"};
}

RequestFacts KmsService::Facts(const Call& c, std::span<const EncryptionContext> contexts) const {
  RequestFacts facts;
  facts.contexts = contexts;
  facts.request_alias = c.request_alias;
  facts.caller_account = options_.account;
  facts.pending_window_days = c.pending_window_days;
  facts.rotation_period_days = c.rotation_period_days;
  return facts;
}

const Grant* KmsService::AllowingGrant(const Call& c, const KeyEntry& key,
                                       std::string_view operation,
                                       std::span<const EncryptionContext> contexts) const {
  if (key.record.grants.empty()) return nullptr;
  const std::vector<std::string> names = c.who.PolicyNames();
  const int64_t now = Now();
  for (const Grant& g : key.record.grants) {
    if (g.Allows(names, operation, contexts, now)) return &g;
  }
  return nullptr;
}

void KmsService::NoteGrantUsed(Call& c, const Grant& g) {
  if (!c.extra.contains("grant_ids")) c.extra["grant_ids"] = nlohmann::ordered_json::array();
  c.extra["grant_ids"].push_back(g.grant_id);
}

std::optional<KmsService::Error> KmsService::RuleError(const KeyRecord& r,
                                                       const Status& s) const {
  if (s.ok()) return std::nullopt;
  if (s.code() == StatusCode::kInvalidArgument) return Error{"ValidationException", s.message()};
  if (s.code() == StatusCode::kFailedPrecondition) {
    return Error{"KMSInvalidStateException", KeyArn(r.key_id) + " " + s.message()};
  }
  if (s.code() == StatusCode::kResourceExhausted) return Error{"LimitExceededException", s.message()};
  if (s.code() == StatusCode::kNotFound) return Error{"NotFoundException", s.message()};
  return Error{"KMSInternalException", s.message(), 500};
}

std::optional<KmsService::Error> KmsService::RequireUsable(const KeyEntry& key) const {
  const std::string arn = KeyArn(key.record.key_id);
  if (key.record.key_state == kStateDisabled) {
    return Error{"DisabledException", arn + " is disabled."};
  }
  if (key.record.key_state == kStatePendingDeletion) {
    return Error{"KMSInvalidStateException", arn + " is pending deletion."};
  }
  if (key.record.external() && key.record.valid_to != 0 && Now() >= key.record.valid_to) {
    return Error{"KMSInvalidStateException",
                 arn + "'s imported key material expired (ValidTo); import it again"};
  }
  if (key.record.key_state == kStatePendingImport) {
    return Error{"KMSInvalidStateException",
                 arn + " is pending import: its key material is not imported (ImportKeyMaterial)."};
  }
  if (key.record.on_token() && !custom_key_stores_->Connected(key.record.custom_key_store_id)) {
    return Error{"KMSInvalidStateException",
                 arn + " is unavailable: its custom key store " +
                     key.record.custom_key_store_id + " is " +
                     custom_key_stores_->StateOf(key.record.custom_key_store_id).connection +
                     " (ConnectCustomKeyStore)"};
  }
  return std::nullopt;
}

json KmsService::KeyMetadata(const KeyRecord& r) const {
  json m = {{"AWSAccountId", options_.account},
            {"KeyId", r.key_id},
            {"Arn", KeyArn(r.key_id)},
            {"CreationDate", r.creation_date},
            {"Enabled", r.key_state == kStateEnabled},
            {"Description", r.description},
            {"KeyUsage", r.key_usage},
            {"KeyState", r.key_state},
            {"Origin", r.origin},
            {"KeyManager", "CUSTOMER"},
            {"CustomerMasterKeySpec", r.key_spec},
            {"KeySpec", r.key_spec},
            {"MultiRegion", r.multi_region},
            // Extension fields (AWS clients ignore unknown members).
            {"CurrentKeyVersion", r.current_version},
            {"MinKeyVersion", r.min_version}};
  AddAlgorithms(r, &m);
  if (r.multi_region) m["MultiRegionConfiguration"] = MultiRegionConfiguration(r);
  // Extension: whose key it is (owner id of its creator), so that a client
  // can warn when a name resolves to a key another principal owns.
  if (!r.creator.empty()) m["Creator"] = r.creator;
  if (r.on_token()) {
    m["CustomKeyStoreId"] = r.custom_key_store_id;
    if (auto store = custom_key_stores_->Find(r.custom_key_store_id)) {
      m["CloudHsmClusterId"] = store->cluster_id;
    }
    // AWS's state for a key whose custom key store is not connected.
    if (r.key_state == kStateEnabled && !custom_key_stores_->Connected(r.custom_key_store_id)) {
      m["KeyState"] = "Unavailable";
    }
  }
  if (r.external()) {
    m["ExpirationModel"] = r.valid_to != 0 ? "KEY_MATERIAL_EXPIRES" : "KEY_MATERIAL_DOES_NOT_EXPIRE";
    if (r.valid_to != 0) m["ValidTo"] = r.valid_to;
  }
  if (r.key_state == kStatePendingDeletion) {
    m["DeletionDate"] = r.deletion_date;
    m["PendingDeletionWindowInDays"] = r.pending_window_days;
  }
  return m;
}

void KmsService::AddAlgorithms(const KeyRecord& r, json* out) {
  const KeySpec* spec = FindKeySpec(r.key_spec);
  if (spec == nullptr) return;
  auto put = [&](const char* field, std::vector<std::string> list) {
    if (!list.empty()) (*out)[field] = std::move(list);
  };
  put("EncryptionAlgorithms", spec->EncryptionAlgorithms(r.key_usage));
  put("SigningAlgorithms", spec->SigningAlgorithms(r.key_usage));
  put("MacAlgorithms", spec->MacAlgorithms(r.key_usage));
  put("KeyAgreementAlgorithms", spec->KeyAgreementAlgorithms(r.key_usage));
}

Status KmsService::AppendAudit(Call& c, const Error* error) {
  c.audited = true;
  return audit_->Append(AuditRecord(c, error));
}

nlohmann::ordered_json KmsService::AuditRecord(const Call& c, const Error* error) const {
  nlohmann::ordered_json rec = AuditCaller(c);
  nlohmann::ordered_json facts = AuditFacts(c, error);
  for (auto& [k, v] : facts.items()) rec[k] = std::move(v);
  return rec;
}

nlohmann::ordered_json KmsService::AuditCaller(const Call& c) const {
  nlohmann::ordered_json rec;
  nlohmann::ordered_json who;
  if (c.who.kind == Principal::Kind::kUnix) {
    who = {{"type", "unix"}, {"name", c.who.PrimaryName()}, {"uid", c.who.uid},
           {"gid", c.who.gid}, {"pid", c.who.pid}, {"exe", c.who.executable}};
  } else if (c.who.kind == Principal::Kind::kAccessKey) {
    who = {{"type", "access_key"}, {"name", c.who.PrimaryName()},
           {"access_key_id", c.who.access_key_id}};
  } else if (c.who.kind == Principal::Kind::kTlsCert) {
    who = {{"type", "tls_cert"}, {"name", c.who.PrimaryName()},
           {"subject", c.who.cert_subject}, {"issuer", c.who.cert_issuer},
           {"serial", c.who.cert_serial}};
  } else if (c.who.kind == Principal::Kind::kService) {
    who = {{"type", "service"}, {"name", c.who.PrimaryName()}};
  } else {
    who = {{"type", "anonymous"}};
  }
  rec["principal"] = who;
  // The connection: how, and for TCP from which ADDR:PORT. A client
  // certificate that did not name the principal (SigV4 did) is noted too.
  const Origin& origin = c.who.origin;
  if (origin.transport != Origin::Transport::kInternal) {
    rec["transport"] = origin.transport_name();
  }
  if (!origin.remote.empty()) rec["remote"] = origin.remote;
  if (!origin.tls_client_subject.empty() && c.who.kind != Principal::Kind::kTlsCert) {
    rec["tls_client_subject"] = origin.tls_client_subject;
  }
  rec["operation"] = (c.extension ? "EnvelopeKeyService." : "") + c.op;
  return rec;
}

nlohmann::ordered_json KmsService::AuditFacts(const Call& c, const Error* error) const {
  nlohmann::ordered_json rec = nlohmann::ordered_json::object();
  if (!c.key_id.empty()) rec["key_id"] = c.key_id;
  if (c.key_version != 0) rec["key_version"] = c.key_version;
  if (c.has_context) rec["encryption_context"] = c.context;
  for (auto& [k, v] : c.extra.items()) rec[k] = v;
  if (error) {
    rec["result"] = "error";
    rec["error_type"] = error->type;
    rec["error_message"] = error->message;
  } else {
    rec["result"] = "ok";
  }
  return rec;
}

std::optional<KmsService::Error> KmsService::CommitWithAudit(Call& c,
                                                             const KeyStore::Change& change) {
  Status s = store_->Commit(change, [&] { return AppendAudit(c, nullptr); });
  if (s.ok()) return std::nullopt;
  Error err{"KMSInternalException", "the change could not be stored: " + s.message(), 500};
  if (c.audited) {
    // The success record was written but the commit failed: say so.
    c.audited = false;
    (void)AppendAudit(c, &err);
  }
  return err;
}

}  // namespace envelope::keyservice
