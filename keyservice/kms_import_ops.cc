// Imported key material: GetParametersForImport, ImportKeyMaterial and
// DeleteImportedKeyMaterial for Origin=EXTERNAL keys, and the expiry of
// imported material (docs/KEYSERVICE.md, "Imported key material").
#include "core/base/base64.h"
#include "core/crypto/aes_key_wrap.h"
#include "core/crypto/asymmetric.h"
#include "core/crypto/hash.h"
#include "keyservice/kms_call.h"

namespace envelope::keyservice {

using json = nlohmann::json;

namespace {

constexpr size_t kMaxEncryptedMaterialInBytes = 6144;
constexpr int64_t kMaxValidToSeconds = int64_t{365} * 86400;

std::string Digest(const crypto::SecretBytes& material) {
  return HexEncode(crypto::Sha256(material.view()));
}

KmsError NotExternal(const std::string& arn) {
  return KmsError{"UnsupportedOperationException",
                  arn + " does not have Origin EXTERNAL: its material is made here"};
}

}  // namespace

KmsService::Outcome KmsService::GetParametersForImport(Call& c) {
  std::string ref, algorithm, spec;
  KMS_TRY(c.req.String("KeyId", true, &ref));
  KMS_TRY(c.req.String("WrappingAlgorithm", true, &algorithm));
  KMS_TRY(c.req.String("WrappingKeySpec", true, &spec));
  ImportParameters p;
  if (algorithm == "RSAES_OAEP_SHA_1" || algorithm == "RSAES_OAEP_SHA_256") {
    p.aes_key_wrap = false;
    p.hash = algorithm == "RSAES_OAEP_SHA_1" ? crypto::Hash::kSha1 : crypto::Hash::kSha256;
  } else if (algorithm == "RSA_AES_KEY_WRAP_SHA_1" || algorithm == "RSA_AES_KEY_WRAP_SHA_256") {
    p.aes_key_wrap = true;
    p.hash = algorithm == "RSA_AES_KEY_WRAP_SHA_1" ? crypto::Hash::kSha1 : crypto::Hash::kSha256;
  } else {
    return KmsRequest::Invalid("WrappingAlgorithm",
                               "Member must satisfy enum value set: [RSAES_OAEP_SHA_1, "
                               "RSAES_OAEP_SHA_256, RSA_AES_KEY_WRAP_SHA_1, "
                               "RSA_AES_KEY_WRAP_SHA_256] (RSAES_PKCS1_V1_5 is not supported)");
  }
  crypto::KeyPairKind kind;
  if (spec == "RSA_2048") kind = crypto::KeyPairKind::kRsa2048;
  else if (spec == "RSA_3072") kind = crypto::KeyPairKind::kRsa3072;
  else if (spec == "RSA_4096") kind = crypto::KeyPairKind::kRsa4096;
  else return KmsRequest::Invalid("WrappingKeySpec", "Member must satisfy enum value set: [RSA_2048, RSA_3072, RSA_4096]");
  std::optional<Error> err;
  auto key = Resolve(c, ref, false, &err);
  KMS_TRY(err);
  KMS_TRY(Authorize(c, *key, "kms:GetParametersForImport"));
  const std::string arn = KeyArn(key->record.key_id);
  if (!key->record.external()) return NotExternal(arn);
  if (key->record.key_state == kStatePendingDeletion) {
    return Error{"KMSInvalidStateException", arn + " is pending deletion."};
  }
  KMS_TRY(ThrottleKeyPairs(c));
  auto pair = crypto::GenerateKeyPair(kind);
  if (!pair.ok()) return Error{"KMSInternalException", pair.status().message(), 500};
  auto pub = crypto::PublicKeyOf(*pair);
  if (!pub.ok()) return Error{"KMSInternalException", pub.status().message(), 500};
  p.key_id = key->record.key_id;
  p.owner = c.who.OwnerId();
  p.wrapping_key = std::make_shared<const crypto::SecretBytes>(std::move(*pair));
  p.created = Now();
  p.valid_to = p.created + ImportTokens::kValiditySeconds;
  const int64_t valid_to = p.valid_to;
  auto token = import_tokens_.Add(std::move(p));
  if (!token.ok()) return Error{"KMSInternalException", token.status().message(), 500};
  c.extra["wrapping_algorithm"] = algorithm;
  c.extra["wrapping_key_spec"] = spec;
  return json{{"KeyId", arn},
              {"ImportToken", Base64Encode(*token)},
              {"PublicKey", Base64Encode(*pub)},
              {"ParametersValidTo", valid_to}};
}

KmsService::Outcome KmsService::ImportKeyMaterial(Call& c) {
  Bytes token, encrypted;
  std::string model = "KEY_MATERIAL_EXPIRES";
  int64_t valid_to = 0;
  KMS_TRY(c.req.Blob("ImportToken", true, &token));
  KMS_TRY(c.req.Blob("EncryptedKeyMaterial", true, &encrypted));
  KMS_TRY(c.req.String("ExpirationModel", false, &model));
  KMS_TRY(c.req.Int("ValidTo", false, &valid_to));
  if (encrypted.empty() || encrypted.size() > kMaxEncryptedMaterialInBytes) {
    return KmsRequest::Invalid("EncryptedKeyMaterial", "Member must have length between 1 and 6144");
  }
  if (model == "KEY_MATERIAL_DOES_NOT_EXPIRE") {
    if (c.req.Has("ValidTo")) {
      return Error{"ValidationException",
                   "ValidTo must be absent with ExpirationModel KEY_MATERIAL_DOES_NOT_EXPIRE"};
    }
  } else if (model == "KEY_MATERIAL_EXPIRES") {
    if (!c.req.Has("ValidTo") || valid_to <= Now() || valid_to > Now() + kMaxValidToSeconds) {
      return Error{"ValidationException",
                   "ExpirationModel KEY_MATERIAL_EXPIRES needs ValidTo in the next 365 days "
                   "(epoch seconds)"};
    }
  } else {
    return KmsRequest::Invalid("ExpirationModel", "Member must satisfy enum value set: "
                                                  "[KEY_MATERIAL_EXPIRES, KEY_MATERIAL_DOES_NOT_EXPIRE]");
  }
  auto params = import_tokens_.Find(token);
  if (!params) {
    return Error{"InvalidImportTokenException",
                 "the import token was not issued by this service (or it restarted since): call "
                 "GetParametersForImport again"};
  }
  if (params->valid_to <= Now()) {
    return Error{"ExpiredImportTokenException", "the import token has expired"};
  }
  c.extra["expiration_model"] = model;
  auto mutated = MutateKey(
      c, "kms:ImportKeyMaterial",
      [&](KeyRecord& r, KeyStore::Change& change, const KeyEntry&) -> std::optional<Error> {
    const std::string arn = KeyArn(r.key_id);
    if (!r.external()) return NotExternal(arn);
    if (r.key_id != params->key_id) {
      return Error{"InvalidImportTokenException", "the import token is for another key"};
    }
    if (r.key_state == kStatePendingDeletion) {
      return Error{"KMSInvalidStateException", arn + " is pending deletion."};
    }
    // The material, unwrapped with the parameters' private key.
    StatusOr<crypto::SecretBytes> material = Status::Corruption("unset");
    if (params->aes_key_wrap) {
      auto pub = crypto::PublicKeyOf(*params->wrapping_key);
      if (!pub.ok()) return Error{"KMSInternalException", pub.status().message(), 500};
      // The RSA-OAEP part is as long as the modulus: its largest plaintext
      // plus the OAEP overhead.
      auto max = crypto::RsaOaepMaxPlaintext(*pub, params->hash);
      if (!max.ok()) return Error{"KMSInternalException", max.status().message(), 500};
      const size_t rsa_part = *max + 2 * crypto::HashSize(params->hash) + 2;
      if (encrypted.size() <= rsa_part) {
        return Error{"InvalidCiphertextException", "EncryptedKeyMaterial is too short"};
      }
      auto aes_key = crypto::RsaOaepDecrypt(*params->wrapping_key, params->hash,
                                            ByteView(encrypted).first(rsa_part));
      if (aes_key.ok()) {
        material = crypto::AesKeyUnwrapPad(*aes_key, ByteView(encrypted).subspan(rsa_part));
      } else {
        material = aes_key.status();
      }
    } else {
      material = crypto::RsaOaepDecrypt(*params->wrapping_key, params->hash, encrypted);
    }
    if (!material.ok()) {
      return Error{"InvalidCiphertextException",
                   "EncryptedKeyMaterial does not unwrap with these parameters"};
    }
    if (material->size() != 32) {
      return Error{"IncorrectKeyMaterialException",
                   "a SYMMETRIC_DEFAULT key takes 256-bit (32-byte) material, not " +
                       std::to_string(material->size()) + " bytes"};
    }
    const std::string digest = Digest(*material);
    if (!r.import_digest.empty() && r.import_digest != digest) {
      return Error{"IncorrectKeyMaterialException",
                   "this key's material was imported before: a re-import must bring the same "
                   "material"};
    }
    if (r.versions.empty()) r.AddVersion(Now(), "INITIAL");
    change.put_materials.emplace_back(
        r.key_id, r.current_version, std::make_shared<const crypto::SecretBytes>(std::move(*material)));
    r.import_digest = digest;
    r.material_imported = true;
    r.valid_to = model == "KEY_MATERIAL_EXPIRES" ? valid_to : 0;
    if (r.key_state == kStatePendingImport) {
      r.key_state = kStateEnabled;
      r.enabled_flag = true;
    }
    c.key_version = r.current_version;
    return std::nullopt;
  });
  if (auto* e = std::get_if<Error>(&mutated)) return *e;
  return json{{"KeyId", KeyArn(std::get<KeyRecord>(mutated).key_id)}};
}

// Takes the imported material out of `r` (DeleteImportedKeyMaterial, expiry).
void KmsService::DropImportedMaterial(KeyRecord* r, KeyStore::Change* change) {
  if (r->material_imported) change->delete_materials.emplace_back(r->key_id, r->current_version);
  r->material_imported = false;
  r->valid_to = 0;
  if (r->key_state != kStatePendingDeletion) r->key_state = kStatePendingImport;
}

KmsService::Outcome KmsService::DeleteImportedKeyMaterial(Call& c) {
  auto mutated = MutateKey(
      c, "kms:DeleteImportedKeyMaterial",
      [&](KeyRecord& r, KeyStore::Change& change, const KeyEntry&) -> std::optional<Error> {
    if (!r.external()) return NotExternal(KeyArn(r.key_id));
    DropImportedMaterial(&r, &change);
    return std::nullopt;
  });
  if (auto* e = std::get_if<Error>(&mutated)) return *e;
  return json::object();
}

void KmsService::ExpireImportedMaterial() {
  Principal service;
  service.kind = Principal::Kind::kService;
  const int64_t now = Now();
  for (const auto& entry : store_->AllKeys()) {
    const KeyRecord& snapshot = entry->record;
    if (!snapshot.external() || !snapshot.material_imported || snapshot.valid_to == 0 ||
        now < snapshot.valid_to) {
      continue;
    }
    auto lock = store_->LockForWrite();
    auto current = store_->FindKey(snapshot.key_id);
    if (!current || !current->record.material_imported) continue;
    KeyRecord r = current->record;
    KeyStore::Change change;
    DropImportedMaterial(&r, &change);
    change.put_records.push_back(r);
    Call c(service);
    c.op = "ExpireImportedKeyMaterial";
    c.key_id = r.key_id;
    (void)CommitWithAudit(c, change);  // failed: retried at the next run
  }
}

}  // namespace envelope::keyservice
