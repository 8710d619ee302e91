// The kinds of KMS key (AWS's KeySpec and KeyUsage): what each may be used
// for, what its material is, and which algorithms it offers
// (docs/KEYSERVICE.md, "Asymmetric and HMAC keys").
//
//   SYMMETRIC_DEFAULT                 ENCRYPT_DECRYPT (AES-256-GCM blobs)
//   RSA_2048, RSA_3072, RSA_4096      ENCRYPT_DECRYPT (RSA-OAEP) or SIGN_VERIFY
//   ECC_NIST_P256, _P384, _P521       SIGN_VERIFY (ECDSA) or KEY_AGREEMENT (ECDH)
//   ECC_SECG_P256K1                   SIGN_VERIFY
//   HMAC_224, _256, _384, _512        GENERATE_VERIFY_MAC
#ifndef ENVELOPE_KEYSERVICE_KEY_SPEC_H_
#define ENVELOPE_KEYSERVICE_KEY_SPEC_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/status.h"
#include "core/crypto/asymmetric.h"
#include "core/crypto/secret_bytes.h"

namespace envelope::keyservice {

inline constexpr char kSpecSymmetric[] = "SYMMETRIC_DEFAULT";
inline constexpr char kUsageEncrypt[] = "ENCRYPT_DECRYPT";
inline constexpr char kUsageSign[] = "SIGN_VERIFY";
inline constexpr char kUsageMac[] = "GENERATE_VERIFY_MAC";
inline constexpr char kUsageAgreement[] = "KEY_AGREEMENT";

struct KeySpec {
  enum class Family { kSymmetric, kRsa, kEc, kHmac };
  std::string_view name;
  Family family;
  std::vector<std::string_view> usages;  // the first is not a default: AWS's default is ENCRYPT_DECRYPT
  std::optional<crypto::KeyPairKind> pair;  // kRsa, kEc
  crypto::Hash hash = crypto::Hash::kSha256;  // kHmac: its digest; kEc: ECDSA's
  size_t material_size = 32;  // bytes of secure heap a version takes, about

  bool asymmetric() const { return family == Family::kRsa || family == Family::kEc; }
  // The algorithm lists of DescribeKey's KeyMetadata (and GetPublicKey's
  // answer) for this spec used for `usage`; empty lists are left out.
  std::vector<std::string> EncryptionAlgorithms(std::string_view usage) const;
  std::vector<std::string> SigningAlgorithms(std::string_view usage) const;
  std::vector<std::string> MacAlgorithms(std::string_view usage) const;
  std::vector<std::string> KeyAgreementAlgorithms(std::string_view usage) const;
  // New material for a version.
  StatusOr<crypto::SecretBytes> MakeMaterial() const;
};

// The spec named `name`, or null.
const KeySpec* FindKeySpec(std::string_view name);
const KeySpec& SymmetricKeySpec();

// Signing algorithms: ("RSASSA_PSS_SHA_256" -> PSS, SHA-256), or nullopt.
struct SigningAlgorithm {
  crypto::SignaturePadding padding;
  crypto::Hash hash;
};
std::optional<SigningAlgorithm> ParseSigningAlgorithm(std::string_view name);
// "RSAES_OAEP_SHA_1" / "RSAES_OAEP_SHA_256" -> the OAEP hash.
std::optional<crypto::Hash> ParseRsaEncryptionAlgorithm(std::string_view name);
// "HMAC_SHA_256" -> SHA-256.
std::optional<crypto::Hash> ParseMacAlgorithm(std::string_view name);

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_KEY_SPEC_H_
