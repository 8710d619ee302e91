// Asymmetric and HMAC keys: Sign, Verify, GetPublicKey, GenerateMac,
// VerifyMac, DeriveSharedSecret, GenerateDataKeyPair[WithoutPlaintext],
// and Encrypt/Decrypt with RSA-OAEP. The key kinds: key_spec.h; the
// cryptography: core/crypto/asymmetric.h.
#include "core/base/base64.h"
#include "core/crypto/asymmetric.h"
#include "core/crypto/hash.h"
#include "keyservice/key_spec.h"
#include "keyservice/kms_call.h"

namespace envelope::keyservice {

using json = nlohmann::json;

namespace {

constexpr size_t kMaxMessageInBytes = 4096;   // Sign, Verify, GenerateMac, VerifyMac
constexpr size_t kMaxSignatureInBytes = 6144;  // Verify's Signature, VerifyMac's Mac
constexpr size_t kMaxPublicKeyInBytes = 8192;  // DeriveSharedSecret's PublicKey

std::optional<KmsError> Message(const KmsRequest& req, const char* field, Bytes* out) {
  if (auto e = req.Blob(field, true, out)) return e;
  if (out->empty() || out->size() > kMaxMessageInBytes) {
    return KmsRequest::Invalid(field, "Member must have length between 1 and 4096");
  }
  return std::nullopt;
}

KmsError UsageError(const std::string& arn, const KeyRecord& r, std::string_view what) {
  return KmsError{"InvalidKeyUsageException",
                  arn + " is a " + r.key_spec + " key for " + r.key_usage + ": " +
                      std::string(what)};
}

bool Lists(const std::vector<std::string>& list, const std::string& name) {
  return std::find(list.begin(), list.end(), name) != list.end();
}

// The digest a Sign or Verify request is about: the message hashed (RAW),
// or the message itself (DIGEST, which must be as long as the hash).
std::variant<Bytes, KmsError> DigestOf(const KmsRequest& req, const Bytes& message,
                                       crypto::Hash hash) {
  std::string type = "RAW";
  if (auto e = req.String("MessageType", false, &type)) return *e;
  if (type == "RAW") return crypto::HashOf(hash, message);
  if (type == "DIGEST") {
    if (message.size() != crypto::HashSize(hash)) {
      return KmsError{"ValidationException",
                      "a DIGEST message for this signing algorithm is " +
                          std::to_string(crypto::HashSize(hash)) + " bytes, not " +
                          std::to_string(message.size())};
    }
    return message;
  }
  return KmsRequest::Invalid("MessageType", "Member must satisfy enum value set: [RAW, DIGEST]");
}

}  // namespace

std::optional<KmsService::Error> KmsService::RequireSymmetric(const KeyEntry& key) const {
  if (key.record.symmetric()) return std::nullopt;
  return UsageError(KeyArn(key.record.key_id), key.record,
                    "this operation needs a symmetric encryption key (SYMMETRIC_DEFAULT)");
}

std::variant<KmsService::UsableKey, KmsService::Error> KmsService::KeyForUse(
    Call& c, const std::string& ref, std::string_view action, std::string_view usage) {
  std::optional<Error> err;
  auto key = Resolve(c, ref, true, &err);
  KMS_TRY(err);
  KMS_TRY(Authorize(c, *key, action));
  KMS_TRY(RequireUsable(*key));
  if (key->record.key_usage != usage) {
    return UsageError(KeyArn(key->record.key_id), key->record,
                      std::string(action) + " needs a key for " + std::string(usage));
  }
  c.key_version = key->record.current_version;
  auto it = key->materials.find(key->record.current_version);
  if (it == key->materials.end()) {
    return Error{"KMSInternalException", "the key's material is missing", 500};
  }
  return UsableKey{key, it->second};
}

std::variant<KmsService::Signing, KmsService::Error> KmsService::PrepareSigning(
    Call& c, std::string_view action) {
  std::string ref;
  Signing out;
  KMS_TRY(c.req.String("KeyId", true, &ref));
  KMS_TRY(Message(c.req, "Message", &out.message));
  KMS_TRY(c.req.String("SigningAlgorithm", true, &out.algorithm));
  auto parsed = ParseSigningAlgorithm(out.algorithm);
  if (!parsed) return KmsRequest::Invalid("SigningAlgorithm", "Member must be a signing algorithm");
  out.padding = parsed->padding;
  out.hash = parsed->hash;
  auto digest = DigestOf(c.req, out.message, out.hash);
  if (auto* e = std::get_if<KmsError>(&digest)) return *e;
  out.digest = std::move(std::get<Bytes>(digest));
  auto use = KeyForUse(c, ref, action, kUsageSign);
  if (auto* e = std::get_if<Error>(&use)) return *e;
  out.key = std::move(std::get<UsableKey>(use));
  const KeyRecord& r = out.key.key->record;
  if (!Lists(FindKeySpec(r.key_spec)->SigningAlgorithms(r.key_usage), out.algorithm)) {
    return UsageError(KeyArn(r.key_id), r, "it does not sign with " + out.algorithm);
  }
  c.extra["signing_algorithm"] = out.algorithm;
  return out;
}

KmsService::Outcome KmsService::Sign(Call& c) {
  auto prepared = PrepareSigning(c, "kms:Sign");
  if (auto* e = std::get_if<Error>(&prepared)) return *e;
  const Signing& s = std::get<Signing>(prepared);
  auto signature = crypto::SignDigest(*s.key.material, s.padding, s.hash, s.digest);
  if (!signature.ok()) return Error{"KMSInternalException", signature.status().message(), 500};
  return json{{"KeyId", KeyArn(s.key.key->record.key_id)},
              {"Signature", Base64Encode(*signature)},
              {"SigningAlgorithm", s.algorithm}};
}

KmsService::Outcome KmsService::Verify(Call& c) {
  Bytes signature;
  KMS_TRY(c.req.Blob("Signature", true, &signature));
  if (signature.empty() || signature.size() > kMaxSignatureInBytes) {
    return KmsRequest::Invalid("Signature", "Member must have length between 1 and 6144");
  }
  auto prepared = PrepareSigning(c, "kms:Verify");
  if (auto* e = std::get_if<Error>(&prepared)) return *e;
  const Signing& s = std::get<Signing>(prepared);
  auto pub = crypto::PublicKeyOf(*s.key.material);
  if (!pub.ok()) return Error{"KMSInternalException", pub.status().message(), 500};
  auto valid = crypto::VerifyDigest(*pub, s.padding, s.hash, s.digest, signature);
  if (!valid.ok()) return Error{"KMSInternalException", valid.status().message(), 500};
  if (!*valid) {
    return Error{"KMSInvalidSignatureException",
                 "the signature does not verify for this message, key and algorithm"};
  }
  return json{{"KeyId", KeyArn(s.key.key->record.key_id)},
              {"SignatureValid", true},
              {"SigningAlgorithm", s.algorithm}};
}

KmsService::Outcome KmsService::GetPublicKey(Call& c) {
  std::string ref;
  KMS_TRY(c.req.String("KeyId", true, &ref));
  std::optional<Error> err;
  auto key = Resolve(c, ref, true, &err);
  KMS_TRY(err);
  KMS_TRY(Authorize(c, *key, "kms:GetPublicKey"));
  KMS_TRY(RequireUsable(*key));
  const KeySpec* spec = FindKeySpec(key->record.key_spec);
  if (spec == nullptr || !spec->asymmetric()) {
    return Error{"UnsupportedOperationException",
                 KeyArn(key->record.key_id) + " is a " + key->record.key_spec +
                     " key: only asymmetric keys have a public key"};
  }
  auto it = key->materials.find(key->record.current_version);
  if (it == key->materials.end()) return Error{"KMSInternalException", "no material", 500};
  auto pub = crypto::PublicKeyOf(*it->second);
  if (!pub.ok()) return Error{"KMSInternalException", pub.status().message(), 500};
  json out = {{"KeyId", KeyArn(key->record.key_id)},
              {"PublicKey", Base64Encode(*pub)},
              {"CustomerMasterKeySpec", key->record.key_spec},
              {"KeySpec", key->record.key_spec},
              {"KeyUsage", key->record.key_usage}};
  AddAlgorithms(key->record, &out);
  return out;
}

std::variant<KmsService::Macing, KmsService::Error> KmsService::PrepareMac(
    Call& c, std::string_view action) {
  std::string ref;
  Macing out;
  KMS_TRY(c.req.String("KeyId", true, &ref));
  KMS_TRY(Message(c.req, "Message", &out.message));
  KMS_TRY(c.req.String("MacAlgorithm", true, &out.algorithm));
  auto hash = ParseMacAlgorithm(out.algorithm);
  if (!hash) return KmsRequest::Invalid("MacAlgorithm", "Member must be HMAC_SHA_224/256/384/512");
  out.hash = *hash;
  auto use = KeyForUse(c, ref, action, kUsageMac);
  if (auto* e = std::get_if<Error>(&use)) return *e;
  out.key = std::move(std::get<UsableKey>(use));
  const KeyRecord& r = out.key.key->record;
  if (!Lists(FindKeySpec(r.key_spec)->MacAlgorithms(kUsageMac), out.algorithm)) {
    return UsageError(KeyArn(r.key_id), r, "its MAC algorithm is not " + out.algorithm);
  }
  return out;
}

KmsService::Outcome KmsService::GenerateMac(Call& c) {
  auto prepared = PrepareMac(c, "kms:GenerateMac");
  if (auto* e = std::get_if<Error>(&prepared)) return *e;
  const Macing& m = std::get<Macing>(prepared);
  auto mac = crypto::HmacSha2(m.hash, *m.key.material, m.message);
  if (!mac.ok()) return Error{"KMSInternalException", mac.status().message(), 500};
  return json{{"Mac", Base64Encode(*mac)},
              {"MacAlgorithm", m.algorithm},
              {"KeyId", KeyArn(m.key.key->record.key_id)}};
}

KmsService::Outcome KmsService::VerifyMac(Call& c) {
  Bytes mac;
  KMS_TRY(c.req.Blob("Mac", true, &mac));
  if (mac.empty() || mac.size() > kMaxSignatureInBytes) {
    return KmsRequest::Invalid("Mac", "Member must have length between 1 and 6144");
  }
  auto prepared = PrepareMac(c, "kms:VerifyMac");
  if (auto* e = std::get_if<Error>(&prepared)) return *e;
  const Macing& m = std::get<Macing>(prepared);
  auto expected = crypto::HmacSha2(m.hash, *m.key.material, m.message);
  if (!expected.ok()) return Error{"KMSInternalException", expected.status().message(), 500};
  if (!crypto::ConstantTimeEquals(*expected, mac)) {
    return Error{"KMSInvalidMacException", "the MAC does not verify for this message and key"};
  }
  return json{{"KeyId", KeyArn(m.key.key->record.key_id)},
              {"MacValid", true},
              {"MacAlgorithm", m.algorithm}};
}

KmsService::Outcome KmsService::DeriveSharedSecret(Call& c) {
  std::string ref, algorithm;
  Bytes peer;
  KMS_TRY(c.req.String("KeyId", true, &ref));
  KMS_TRY(c.req.String("KeyAgreementAlgorithm", true, &algorithm));
  KMS_TRY(c.req.Blob("PublicKey", true, &peer));
  if (algorithm != "ECDH") {
    return KmsRequest::Invalid("KeyAgreementAlgorithm", "Member must satisfy enum value set: [ECDH]");
  }
  if (peer.empty() || peer.size() > kMaxPublicKeyInBytes) {
    return KmsRequest::Invalid("PublicKey", "Member must have length between 1 and 8192");
  }
  auto use = KeyForUse(c, ref, "kms:DeriveSharedSecret", kUsageAgreement);
  if (auto* e = std::get_if<Error>(&use)) return *e;
  const UsableKey& k = std::get<UsableKey>(use);
  auto secret = crypto::EcdhSharedSecret(*k.material, peer);
  if (!secret.ok()) {
    return Error{"ValidationException",
                 "PublicKey is not a DER SubjectPublicKeyInfo on this key's curve: " +
                     secret.status().message()};
  }
  c.sensitive_response = true;
  return json{{"KeyId", KeyArn(k.key->record.key_id)},
              {"SharedSecret", Base64Encode(secret->view())},
              {"KeyAgreementAlgorithm", "ECDH"},
              {"KeyOrigin", k.key->record.origin}};
}

KmsService::Outcome KmsService::GenerateDataKeyPair(Call& c, bool with_plaintext) {
  std::string ref, pair_spec;
  KMS_TRY(c.req.String("KeyId", true, &ref));
  KMS_TRY(c.req.String("KeyPairSpec", true, &pair_spec));
  KMS_TRY(c.req.Context("EncryptionContext", &c.context));
  c.has_context = true;
  const KeySpec* spec = FindKeySpec(pair_spec);
  if (spec == nullptr || !spec->asymmetric()) {
    return KmsRequest::Invalid("KeyPairSpec",
                               "Member must satisfy enum value set: [RSA_2048, RSA_3072, "
                               "RSA_4096, ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521, "
                               "ECC_SECG_P256K1]");
  }
  auto sealing = KeyForSealing(c, ref,
                               with_plaintext ? "kms:GenerateDataKeyPair"
                                              : "kms:GenerateDataKeyPairWithoutPlaintext",
                               {&c.context, 1});
  if (auto* e = std::get_if<Error>(&sealing)) return *e;
  SealingKey& key = std::get<SealingKey>(sealing);
  c.extra["key_pair_spec"] = pair_spec;
  KMS_TRY(ThrottleKeyPairs(c));
  auto pair = spec->MakeMaterial();
  if (!pair.ok()) return Error{"KMSInternalException", pair.status().message(), 500};
  auto pub = crypto::PublicKeyOf(*pair);
  if (!pub.ok()) return Error{"KMSInternalException", pub.status().message(), 500};
  auto blob = key.Seal(c.context, pair->view());
  if (!blob.ok()) return SealError(blob.status());
  json out = {{"PrivateKeyCiphertextBlob", Base64Encode(*blob)},
              {"PublicKey", Base64Encode(*pub)},
              {"KeyId", KeyArn(key.key->record.key_id)},
              {"KeyPairSpec", pair_spec}};
  if (with_plaintext) {
    out["PrivateKeyPlaintext"] = Base64Encode(pair->view());
    c.sensitive_response = true;
  }
  return out;
}

std::variant<KmsService::RsaUse, KmsService::Error> KmsService::PrepareRsa(
    Call& c, const std::string& ref, std::string_view action) {
  RsaUse out;
  KMS_TRY(c.req.String("EncryptionAlgorithm", true, &out.algorithm));
  auto hash = ParseRsaEncryptionAlgorithm(out.algorithm);
  if (!hash) {
    return KmsRequest::Invalid("EncryptionAlgorithm",
                               "Member must satisfy enum value set: [SYMMETRIC_DEFAULT, "
                               "RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256]");
  }
  out.hash = *hash;
  if (ref.empty()) {
    return Error{"ValidationException",
                 "KeyId is required with an asymmetric key (its ciphertext does not name it)"};
  }
  if (!c.context.empty()) {
    return Error{"ValidationException",
                 "EncryptionContext is not supported with asymmetric keys (as in AWS)"};
  }
  auto use = KeyForUse(c, ref, action, kUsageEncrypt);
  if (auto* e = std::get_if<Error>(&use)) return *e;
  out.key = std::move(std::get<UsableKey>(use));
  const KeyRecord& r = out.key.key->record;
  if (r.symmetric()) return UsageError(KeyArn(r.key_id), r, out.algorithm + " needs an RSA key");
  c.extra["encryption_algorithm"] = out.algorithm;
  return out;
}

KmsService::Outcome KmsService::EncryptAsymmetric(Call& c, const std::string& ref,
                                                  ByteView plaintext) {
  auto prepared = PrepareRsa(c, ref, "kms:Encrypt");
  if (auto* e = std::get_if<Error>(&prepared)) return *e;
  const RsaUse& u = std::get<RsaUse>(prepared);
  const KeyRecord& r = u.key.key->record;
  auto pub = crypto::PublicKeyOf(*u.key.material);
  if (!pub.ok()) return Error{"KMSInternalException", pub.status().message(), 500};
  auto max = crypto::RsaOaepMaxPlaintext(*pub, u.hash);
  if (max.ok() && plaintext.size() > *max) {
    return Error{"ValidationException", "the plaintext is longer than " + std::to_string(*max) +
                                            " bytes, the most " + u.algorithm + " takes with " +
                                            r.key_spec};
  }
  auto ciphertext = crypto::RsaOaepEncrypt(*pub, u.hash, plaintext);
  if (!ciphertext.ok()) return Error{"KMSInternalException", ciphertext.status().message(), 500};
  return json{{"CiphertextBlob", Base64Encode(*ciphertext)},
              {"KeyId", KeyArn(r.key_id)},
              {"EncryptionAlgorithm", u.algorithm}};
}

KmsService::Outcome KmsService::DecryptAsymmetric(Call& c, const std::string& ref,
                                                  ByteView ciphertext) {
  auto prepared = PrepareRsa(c, ref, "kms:Decrypt");
  if (auto* e = std::get_if<Error>(&prepared)) return *e;
  const RsaUse& u = std::get<RsaUse>(prepared);
  const UsableKey& k = u.key;
  const std::string& algorithm = u.algorithm;
  auto plaintext = crypto::RsaOaepDecrypt(*k.material, u.hash, ciphertext);
  if (!plaintext.ok()) {
    return Error{"InvalidCiphertextException",
                 "the ciphertext does not decrypt under this key and algorithm"};
  }
  c.sensitive_response = true;
  return json{{"KeyId", KeyArn(k.key->record.key_id)},
              {"Plaintext", Base64Encode(plaintext->view())},
              {"EncryptionAlgorithm", algorithm}};
}

}  // namespace envelope::keyservice
