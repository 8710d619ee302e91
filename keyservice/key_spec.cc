#include "keyservice/key_spec.h"

#include <algorithm>
#include <array>

namespace envelope::keyservice {

namespace {

using crypto::Hash;
using crypto::KeyPairKind;
using F = KeySpec::Family;

const std::array<KeySpec, 12>& Specs() {
  static const std::array<KeySpec, 12> kSpecs = {{
      {"SYMMETRIC_DEFAULT", F::kSymmetric, {kUsageEncrypt}, std::nullopt, Hash::kSha256, 32},
      {"RSA_2048", F::kRsa, {kUsageEncrypt, kUsageSign}, KeyPairKind::kRsa2048, Hash::kSha256, 2048},
      {"RSA_3072", F::kRsa, {kUsageEncrypt, kUsageSign}, KeyPairKind::kRsa3072, Hash::kSha256, 4096},
      {"RSA_4096", F::kRsa, {kUsageEncrypt, kUsageSign}, KeyPairKind::kRsa4096, Hash::kSha256, 4096},
      {"ECC_NIST_P256", F::kEc, {kUsageSign, kUsageAgreement}, KeyPairKind::kEcP256, Hash::kSha256, 256},
      {"ECC_NIST_P384", F::kEc, {kUsageSign, kUsageAgreement}, KeyPairKind::kEcP384, Hash::kSha384, 256},
      {"ECC_NIST_P521", F::kEc, {kUsageSign, kUsageAgreement}, KeyPairKind::kEcP521, Hash::kSha512, 256},
      {"ECC_SECG_P256K1", F::kEc, {kUsageSign}, KeyPairKind::kEcSecp256k1, Hash::kSha256, 256},
      {"HMAC_224", F::kHmac, {kUsageMac}, std::nullopt, Hash::kSha224, 28},
      {"HMAC_256", F::kHmac, {kUsageMac}, std::nullopt, Hash::kSha256, 32},
      {"HMAC_384", F::kHmac, {kUsageMac}, std::nullopt, Hash::kSha384, 48},
      {"HMAC_512", F::kHmac, {kUsageMac}, std::nullopt, Hash::kSha512, 64},
  }};
  return kSpecs;
}

const char* HashSuffix(Hash h) {
  switch (h) {
    case Hash::kSha1: return "1";
    case Hash::kSha224: return "224";
    case Hash::kSha256: return "256";
    case Hash::kSha384: return "384";
    case Hash::kSha512: return "512";
  }
  return "256";
}

}  // namespace

const KeySpec* FindKeySpec(std::string_view name) {
  for (const KeySpec& s : Specs()) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

const KeySpec& SymmetricKeySpec() { return Specs()[0]; }

std::vector<std::string> KeySpec::EncryptionAlgorithms(std::string_view usage) const {
  if (usage != kUsageEncrypt) return {};
  if (family == F::kSymmetric) return {"SYMMETRIC_DEFAULT"};
  if (family == F::kRsa) return {"RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"};
  return {};
}

std::vector<std::string> KeySpec::SigningAlgorithms(std::string_view usage) const {
  if (usage != kUsageSign) return {};
  if (family == F::kRsa) {
    return {"RSASSA_PSS_SHA_256",        "RSASSA_PSS_SHA_384",        "RSASSA_PSS_SHA_512",
            "RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512"};
  }
  if (family == F::kEc) return {std::string("ECDSA_SHA_") + HashSuffix(hash)};
  return {};
}

std::vector<std::string> KeySpec::MacAlgorithms(std::string_view usage) const {
  if (usage != kUsageMac || family != F::kHmac) return {};
  return {std::string("HMAC_SHA_") + HashSuffix(hash)};
}

std::vector<std::string> KeySpec::KeyAgreementAlgorithms(std::string_view usage) const {
  if (usage != kUsageAgreement || family != F::kEc) return {};
  return {"ECDH"};
}

StatusOr<crypto::SecretBytes> KeySpec::MakeMaterial() const {
  if (pair) return crypto::GenerateKeyPair(*pair);
  return crypto::SecretBytes::Random(family == F::kHmac ? crypto::HashSize(hash) : 32);
}

std::optional<SigningAlgorithm> ParseSigningAlgorithm(std::string_view name) {
  struct Row {
    std::string_view name;
    SigningAlgorithm algorithm;
  };
  using P = crypto::SignaturePadding;
  static constexpr Row kRows[] = {
      {"RSASSA_PSS_SHA_256", {P::kRsaPss, Hash::kSha256}},
      {"RSASSA_PSS_SHA_384", {P::kRsaPss, Hash::kSha384}},
      {"RSASSA_PSS_SHA_512", {P::kRsaPss, Hash::kSha512}},
      {"RSASSA_PKCS1_V1_5_SHA_256", {P::kRsaPkcs1, Hash::kSha256}},
      {"RSASSA_PKCS1_V1_5_SHA_384", {P::kRsaPkcs1, Hash::kSha384}},
      {"RSASSA_PKCS1_V1_5_SHA_512", {P::kRsaPkcs1, Hash::kSha512}},
      {"ECDSA_SHA_256", {P::kEcdsa, Hash::kSha256}},
      {"ECDSA_SHA_384", {P::kEcdsa, Hash::kSha384}},
      {"ECDSA_SHA_512", {P::kEcdsa, Hash::kSha512}},
  };
  for (const Row& r : kRows) {
    if (r.name == name) return r.algorithm;
  }
  return std::nullopt;
}

std::optional<crypto::Hash> ParseRsaEncryptionAlgorithm(std::string_view name) {
  if (name == "RSAES_OAEP_SHA_1") return Hash::kSha1;
  if (name == "RSAES_OAEP_SHA_256") return Hash::kSha256;
  return std::nullopt;
}

std::optional<crypto::Hash> ParseMacAlgorithm(std::string_view name) {
  if (name == "HMAC_SHA_224") return Hash::kSha224;
  if (name == "HMAC_SHA_256") return Hash::kSha256;
  if (name == "HMAC_SHA_384") return Hash::kSha384;
  if (name == "HMAC_SHA_512") return Hash::kSha512;
  return std::nullopt;
}

}  // namespace envelope::keyservice
