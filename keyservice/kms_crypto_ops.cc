// Encrypt, Decrypt, ReEncrypt, GenerateDataKey[WithoutPlaintext],
// GenerateRandom, and the extension GenerateDataKeys.
#include "core/base/base64.h"
#include "core/crypto/random.h"
#include "keyservice/kms_call.h"

namespace envelope::keyservice {

using json = nlohmann::json;


namespace {

constexpr size_t kMaxPlaintextInBytes = 4096;   // Encrypt

std::optional<KmsError> CheckAlgorithm(const KmsRequest& req, const char* field) {
  std::string algorithm;
  if (auto e = req.String(field, false, &algorithm)) return e;
  if (req.Has(field) && algorithm != "SYMMETRIC_DEFAULT") {
    return KmsRequest::Invalid(field, "Member must satisfy enum value set: [SYMMETRIC_DEFAULT]");
  }
  return std::nullopt;
}

// An RSAES_* EncryptionAlgorithm: the request is for an RSA key.
bool IsAsymmetricAlgorithm(const KmsRequest& req, const char* field) {
  std::string algorithm;
  return req.Has(field) && !req.String(field, false, &algorithm) &&
         algorithm.rfind("RSAES_", 0) == 0;
}

// Base64 of secret bytes, for a response body.
std::string EncodeSecret(const crypto::SecretBytes& s) { return Base64Encode(s.view()); }

// The size of a data key: exactly one of KeySpec and NumberOfBytes.
std::optional<KmsError> DataKeySize(const KmsRequest& req, int64_t* bytes) {
  std::string key_spec;
  if (auto e = req.String("KeySpec", false, &key_spec)) return e;
  if (auto e = req.Int("NumberOfBytes", false, bytes)) return e;
  const bool has_spec = req.Has("KeySpec"), has_bytes = req.Has("NumberOfBytes");
  if (has_spec == has_bytes) {
    return KmsError{"ValidationException", "specify exactly one of KeySpec and NumberOfBytes"};
  }
  if (has_spec) {
    if (key_spec == "AES_256") {
      *bytes = 32;
    } else if (key_spec == "AES_128") {
      *bytes = 16;
    } else {
      return KmsError{"ValidationException",
                        "1 validation error detected: Value '" + key_spec +
                            "' at 'keySpec' failed to satisfy constraint: Member must satisfy "
                            "enum value set: [AES_256, AES_128]"};
    }
  } else if (*bytes < 1 || *bytes > 1024) {
    return KmsRequest::Invalid("NumberOfBytes", "Member must have value between 1 and 1024");
  }
  return std::nullopt;
}

}  // namespace

std::variant<KmsService::SealingKey, KmsService::Error> KmsService::KeyForSealing(
    Call& c, const std::string& key_ref, std::string_view action,
    std::span<const EncryptionContext> contexts) const {
  std::optional<Error> err;
  auto key = Resolve(c, key_ref, true, &err);
  KMS_TRY(err);
  KMS_TRY(Authorize(c, *key, action, contexts));
  KMS_TRY(RequireUsable(*key));
  KMS_TRY(RequireSymmetric(*key));
  SealingKey sealing{key, key->record.current_version, {}, nullptr, custom_key_stores_.get()};
  ParseKeyId(key->record.key_id, &sealing.id);
  c.key_version = sealing.version;
  return sealing;
}

StatusOr<Bytes> KmsService::SealingKey::Seal(const EncryptionContext& context,
                                             ByteView plaintext) {
  if (key->record.on_token()) {
    return SealBlobWith({id, version}, context, plaintext, [&](ByteView pt, ByteView aad) {
      return token_stores->Seal(key->record.custom_key_store_id, key->record.key_id, version, pt,
                                aad);
    });
  }
  if (!sealer) {
    ENVELOPE_ASSIGN_OR_RETURN(BlobSealer made,
                              BlobSealer::New(*key->materials.at(version), {id, version}));
    sealer = std::make_shared<BlobSealer>(std::move(made));
  }
  return sealer->Seal(context, plaintext);
}

KmsService::Error KmsService::SealError(const Status& s) {
  if (s.code() == StatusCode::kFailedPrecondition) {
    return Error{"KMSInvalidStateException", "the key is unavailable: " + s.message()};
  }
  return Error{"KMSInternalException", s.message(), 500};
}

KmsService::Outcome KmsService::Encrypt(Call& c) {
  std::string key_ref;
  Bytes plaintext;
  KMS_TRY(c.req.String("KeyId", true, &key_ref));
  KMS_TRY(c.req.Blob("Plaintext", true, &plaintext));
  KMS_TRY(c.req.Context("EncryptionContext", &c.context));
  c.has_context = true;
  // The plaintext now sits in an ordinary buffer; wipe it on every path.
  struct Wipe {
    Bytes& b;
    ~Wipe() { crypto::Cleanse(b); }
  } wipe{plaintext};
  if (plaintext.empty() || plaintext.size() > kMaxPlaintextInBytes) {
    return Error{"ValidationException",
                 "1 validation error detected: Value at 'plaintext' failed to satisfy "
                 "constraint: Member must have length between 1 and 4096"};
  }
  if (IsAsymmetricAlgorithm(c.req, "EncryptionAlgorithm")) {
    return EncryptAsymmetric(c, key_ref, plaintext);
  }
  KMS_TRY(CheckAlgorithm(c.req, "EncryptionAlgorithm"));
  auto sealing = KeyForSealing(c, key_ref, "kms:Encrypt", {&c.context, 1});
  if (auto* e = std::get_if<Error>(&sealing)) return *e;
  SealingKey& key = std::get<SealingKey>(sealing);
  auto blob = key.Seal(c.context, plaintext);
  if (!blob.ok()) return SealError(blob.status());
  return json{{"CiphertextBlob", Base64Encode(*blob)},
              {"KeyId", KeyArn(key.key->record.key_id)},
              {"EncryptionAlgorithm", "SYMMETRIC_DEFAULT"}};
}

std::variant<KmsService::OpenedBlob, KmsService::Error> KmsService::OpenCiphertext(
    Call& c, ByteView blob, const std::string& expected_ref, std::string_view action,
    const EncryptionContext& context) {
  auto header = PeekBlob(blob);
  if (!header.ok()) {
    return Error{"InvalidCiphertextException", "the ciphertext is not a valid blob"};
  }
  const std::string key_id = FormatKeyId(header->key_id);
  const uint32_t version = header->key_version;
  c.key_id = key_id;
  c.key_version = version;
  auto key = store_->FindKey(key_id);
  if (!key) {
    return Error{"NotFoundException",
                 "the key that encrypted this ciphertext (" + key_id + ") does not exist"};
  }
  if (!expected_ref.empty()) {
    std::optional<Error> err;
    auto named = Resolve(c, expected_ref, true, &err);
    c.key_id = key_id;
    KMS_TRY(err);
    if (named->record.key_id != key_id) {
      return Error{"IncorrectKeyException",
                   "The key ID in the request does not identify a KMS key that can perform "
                   "this operation."};
    }
  }
  KMS_TRY(Authorize(c, *key, action, {&context, 1}));
  if (action == "kms:ReEncryptFrom") {
    // ReEncrypt hands the plaintext to a key of the caller's choosing, where
    // Decrypt then reveals it: an explicit Deny of kms:Decrypt therefore
    // also stops ReEncrypt from this key (AWS does not do this;
    // docs/KEYSERVICE.md, "Key policies").
    const std::string arn = KeyArn(key_id);
    if (key->policy.Evaluate(c.who, "kms:Decrypt", arn, Facts(c, {&context, 1})) ==
        KeyPolicy::Decision::kExplicitDeny) {
      return Error{"AccessDeniedException",
                   "User: " + c.who.PrimaryName() + " is not authorized to perform: "
                   "kms:ReEncryptFrom on resource: " + arn +
                   " because a key policy statement explicitly denies it kms:Decrypt"};
    }
  }
  KMS_TRY(RequireUsable(*key));
  // Our blobs are sealed by symmetric keys only: a blob naming any other
  // key was not made here (and its material is no AES key).
  KMS_TRY(RequireSymmetric(*key));
  if (version < key->record.min_version) {
    return Error{"KMSInvalidStateException",
                 "key version " + std::to_string(version) + " of " + KeyArn(key_id) +
                     " has been retired: its material is destroyed and data under it can "
                     "never be decrypted"};
  }
  const bool known = key->record.on_token()
                         ? version >= 1 && version <= key->record.current_version
                         : key->materials.count(version) > 0;
  if (!known) {
    return Error{"InvalidCiphertextException", "the ciphertext names an unknown key version"};
  }
  StatusOr<crypto::SecretBytes> opened = Status::Internal("unset");
  if (key->record.on_token()) {
    opened = OpenBlobWith(blob, context, [&](ByteView sealed, ByteView aad) {
      return custom_key_stores_->Open(key->record.custom_key_store_id, key_id, version, sealed,
                                      aad);
    });
    if (!opened.ok() && opened.status().code() == StatusCode::kFailedPrecondition) {
      return Error{"KMSInvalidStateException",
                   KeyArn(key_id) + " is unavailable: " + opened.status().message()};
    }
    if (!opened.ok() && opened.status().code() != StatusCode::kCorruption) {
      return Error{"KMSInternalException",
                   "the custom key store's token failed: " + opened.status().message(), 500};
    }
  } else {
    opened = OpenBlob(*key->materials.at(version), blob, context);
  }
  if (!opened.ok()) {
    return Error{"InvalidCiphertextException",
                 "the ciphertext does not authenticate (wrong encryption context, or damaged)"};
  }
  return OpenedBlob{std::move(key), std::move(*opened)};
}

KmsService::Outcome KmsService::Decrypt(Call& c) {
  Bytes blob;
  std::string key_ref;
  KMS_TRY(c.req.Blob("CiphertextBlob", true, &blob));
  KMS_TRY(c.req.Context("EncryptionContext", &c.context));
  KMS_TRY(c.req.String("KeyId", false, &key_ref));
  c.has_context = true;
  if (blob.empty() || blob.size() > kMaxCiphertextInBytes) {
    return Error{"ValidationException",
                 "1 validation error detected: Value at 'ciphertextBlob' failed to satisfy "
                 "constraint: Member must have length between 1 and 6144"};
  }
  if (IsAsymmetricAlgorithm(c.req, "EncryptionAlgorithm")) {
    return DecryptAsymmetric(c, key_ref, blob);
  }
  KMS_TRY(CheckAlgorithm(c.req, "EncryptionAlgorithm"));
  auto opened = OpenCiphertext(c, blob, key_ref, "kms:Decrypt", c.context);
  if (auto* e = std::get_if<Error>(&opened)) return *e;
  const OpenedBlob& o = std::get<OpenedBlob>(opened);
  c.sensitive_response = true;
  return json{{"KeyId", KeyArn(o.key->record.key_id)},
              {"Plaintext", EncodeSecret(o.plaintext)},
              {"EncryptionAlgorithm", "SYMMETRIC_DEFAULT"}};
}

KmsService::Outcome KmsService::ReEncrypt(Call& c) {
  Bytes blob;
  std::string source_ref, dest_ref;
  EncryptionContext source_context;
  KMS_TRY(c.req.Blob("CiphertextBlob", true, &blob));
  KMS_TRY(c.req.String("DestinationKeyId", true, &dest_ref));
  KMS_TRY(c.req.String("SourceKeyId", false, &source_ref));
  KMS_TRY(c.req.Context("SourceEncryptionContext", &source_context));
  KMS_TRY(c.req.Context("DestinationEncryptionContext", &c.context));
  KMS_TRY(CheckAlgorithm(c.req, "SourceEncryptionAlgorithm"));
  KMS_TRY(CheckAlgorithm(c.req, "DestinationEncryptionAlgorithm"));
  c.has_context = true;
  if (blob.empty() || blob.size() > kMaxCiphertextInBytes) {
    return Error{"ValidationException",
                 "1 validation error detected: Value at 'ciphertextBlob' failed to satisfy "
                 "constraint: Member must have length between 1 and 6144"};
  }
  auto opened = OpenCiphertext(c, blob, source_ref, "kms:ReEncryptFrom", source_context);
  if (auto* e = std::get_if<Error>(&opened)) return *e;
  const std::shared_ptr<const KeyEntry>& source = std::get<OpenedBlob>(opened).key;
  const crypto::SecretBytes& plaintext = std::get<OpenedBlob>(opened).plaintext;
  c.extra["source_key_id"] = c.key_id;
  c.extra["source_key_version"] = c.key_version;
  c.extra["source_encryption_context"] = source_context;

  auto sealing = KeyForSealing(c, dest_ref, "kms:ReEncryptTo", {&c.context, 1});
  if (auto* e = std::get_if<Error>(&sealing)) return *e;
  const std::shared_ptr<const KeyEntry>& dest = std::get<SealingKey>(sealing).key;
  auto sealed = std::get<SealingKey>(sealing).Seal(c.context, plaintext.view());
  if (!sealed.ok()) return SealError(sealed.status());
  return json{{"CiphertextBlob", Base64Encode(*sealed)},
              {"SourceKeyId", KeyArn(source->record.key_id)},
              {"KeyId", KeyArn(dest->record.key_id)},
              {"SourceEncryptionAlgorithm", "SYMMETRIC_DEFAULT"},
              {"DestinationEncryptionAlgorithm", "SYMMETRIC_DEFAULT"}};
}

KmsService::Outcome KmsService::GenerateDataKey(Call& c, bool with_plaintext) {
  std::string key_ref;
  int64_t bytes = 0;
  KMS_TRY(c.req.String("KeyId", true, &key_ref));
  KMS_TRY(DataKeySize(c.req, &bytes));
  KMS_TRY(c.req.Context("EncryptionContext", &c.context));
  c.has_context = true;
  auto sealing = KeyForSealing(
      c, key_ref,
      with_plaintext ? "kms:GenerateDataKey" : "kms:GenerateDataKeyWithoutPlaintext",
      {&c.context, 1});
  if (auto* e = std::get_if<Error>(&sealing)) return *e;
  SealingKey& key = std::get<SealingKey>(sealing);
  auto dek = crypto::SecretBytes::Random(static_cast<size_t>(bytes));
  if (!dek.ok()) return Error{"KMSInternalException", dek.status().message(), 500};
  auto blob = key.Seal(c.context, dek->view());
  if (!blob.ok()) return SealError(blob.status());
  json out = {{"CiphertextBlob", Base64Encode(*blob)},
              {"KeyId", KeyArn(key.key->record.key_id)}};
  if (with_plaintext) {
    out["Plaintext"] = EncodeSecret(*dek);
    c.sensitive_response = true;
  }
  return out;
}

// GenerateDataKey for many encryption contexts at once (an extension), so
// that a client making keys ahead of need (envelopefs's pool of file keys)
// pays one round trip, one policy check and one audit record per batch
// rather than per key. Each key is exactly what GenerateDataKey would have
// made for its context, under one key version.
KmsService::Outcome KmsService::GenerateDataKeys(Call& c) {
  std::string key_ref;
  int64_t bytes = 0;
  std::vector<EncryptionContext> contexts;
  KMS_TRY(c.req.String("KeyId", true, &key_ref));
  KMS_TRY(DataKeySize(c.req, &bytes));
  KMS_TRY(c.req.ContextList("EncryptionContexts", kMaxDataKeysPerRequest, &contexts));
  c.extra["encryption_contexts"] = contexts;
  auto sealing = KeyForSealing(c, key_ref, "kms:GenerateDataKey", contexts);
  if (auto* e = std::get_if<Error>(&sealing)) return *e;
  SealingKey& key = std::get<SealingKey>(sealing);
  json keys = json::array();
  c.sensitive_response = true;
  for (const EncryptionContext& context : contexts) {
    auto dek = crypto::SecretBytes::Random(static_cast<size_t>(bytes));
    if (!dek.ok()) return Error{"KMSInternalException", dek.status().message(), 500};
    auto blob = key.Seal(context, dek->view());
    if (!blob.ok()) return SealError(blob.status());
    keys.push_back({{"CiphertextBlob", Base64Encode(*blob)}, {"Plaintext", EncodeSecret(*dek)}});
  }
  return json{{"KeyId", KeyArn(key.key->record.key_id)}, {"DataKeys", std::move(keys)}};
}

KmsService::Outcome KmsService::GenerateRandom(Call& c) {
  int64_t bytes = 0;
  KMS_TRY(c.req.Int("NumberOfBytes", true, &bytes));
  if (bytes < 1 || bytes > 1024) {
    return Error{"ValidationException",
                 "1 validation error detected: Value at 'numberOfBytes' failed to satisfy "
                 "constraint: Member must have value between 1 and 1024"};
  }
  auto random = crypto::SecretBytes::Random(static_cast<size_t>(bytes));
  if (!random.ok()) return Error{"KMSInternalException", random.status().message(), 500};
  c.sensitive_response = true;
  return json{{"Plaintext", EncodeSecret(*random)}};
}

}  // namespace envelope::keyservice
