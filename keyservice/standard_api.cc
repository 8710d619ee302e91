#include "keyservice/standard_api.h"

#include <span>

namespace envelope::keyservice {

namespace {

struct Shape;

// One member of an output shape. `shape` is the structure it holds (or, for
// a list, the structure of its elements); null for a scalar, a list of
// scalars, or a structure we never fill (kept as it is).
struct Member {
  constexpr Member(std::string_view n, const Shape* s = nullptr) : name(n), shape(s) {}
  std::string_view name;
  const Shape* shape;
};

struct Shape {
  std::span<const Member> members;
};

// The structures, member for member as in service-2.json.
constexpr Member kKeyMetadataMembers[] = {
    {"AWSAccountId"}, {"KeyId"}, {"Arn"}, {"CreationDate"}, {"Enabled"}, {"Description"},
    {"KeyUsage"}, {"KeyState"}, {"DeletionDate"}, {"ValidTo"}, {"Origin"},
    {"CustomKeyStoreId"}, {"CloudHsmClusterId"}, {"ExpirationModel"}, {"KeyManager"},
    {"CustomerMasterKeySpec"}, {"KeySpec"}, {"EncryptionAlgorithms"}, {"SigningAlgorithms"},
    {"KeyAgreementAlgorithms"}, {"MultiRegion"}, {"MultiRegionConfiguration"},
    {"PendingDeletionWindowInDays"}, {"MacAlgorithms"}, {"XksKeyConfiguration"},
    {"CurrentKeyMaterialId"}};
constexpr Shape kKeyMetadata{kKeyMetadataMembers};

constexpr Member kKeyListEntryMembers[] = {{"KeyId"}, {"KeyArn"}};
constexpr Shape kKeyListEntry{kKeyListEntryMembers};

constexpr Member kAliasListEntryMembers[] = {{"AliasName"}, {"AliasArn"}, {"TargetKeyId"},
                                             {"CreationDate"}, {"LastUpdatedDate"}};
constexpr Shape kAliasListEntry{kAliasListEntryMembers};

constexpr Member kRotationsListEntryMembers[] = {
    {"KeyId"},          {"KeyMaterialId"},   {"KeyMaterialDescription"},
    {"ImportState"},    {"KeyMaterialState"}, {"ExpirationModel"},
    {"ValidTo"},        {"RotationDate"},    {"RotationType"}};
constexpr Shape kRotationsListEntry{kRotationsListEntryMembers};

constexpr Member kTagMembers[] = {{"TagKey"}, {"TagValue"}};
constexpr Shape kTag{kTagMembers};

constexpr Member kCustomKeyStoresListEntryMembers[] = {
    {"CustomKeyStoreId"}, {"CustomKeyStoreName"}, {"CloudHsmClusterId"},
    {"TrustAnchorCertificate"}, {"ConnectionState"}, {"ConnectionErrorCode"},
    {"CreationDate"}, {"CustomKeyStoreType"}, {"XksProxyConfiguration"}};
constexpr Shape kCustomKeyStoresListEntry{kCustomKeyStoresListEntryMembers};

constexpr Member kGrantListEntryMembers[] = {
    {"KeyId"}, {"GrantId"}, {"Name"}, {"CreationDate"}, {"GranteePrincipal"},
    {"RetiringPrincipal"}, {"IssuingAccount"}, {"Operations"}, {"Constraints"}};
constexpr Shape kGrantListEntry{kGrantListEntryMembers};

// The output shapes of the operations.
constexpr Member kMetadataOutput[] = {{"KeyMetadata", &kKeyMetadata}};
constexpr Member kListKeysOutput[] = {
    {"Keys", &kKeyListEntry}, {"NextMarker"}, {"Truncated"}};
constexpr Member kListAliasesOutput[] = {
    {"Aliases", &kAliasListEntry}, {"NextMarker"}, {"Truncated"}};
constexpr Member kEncryptOutput[] = {{"CiphertextBlob"}, {"KeyId"}, {"EncryptionAlgorithm"}};
constexpr Member kDecryptOutput[] = {{"KeyId"}, {"Plaintext"}, {"EncryptionAlgorithm"},
                                     {"CiphertextForRecipient"}, {"KeyMaterialId"}};
constexpr Member kReEncryptOutput[] = {
    {"CiphertextBlob"}, {"SourceKeyId"}, {"KeyId"}, {"SourceEncryptionAlgorithm"},
    {"DestinationEncryptionAlgorithm"}, {"SourceKeyMaterialId"}, {"DestinationKeyMaterialId"}};
constexpr Member kGenerateDataKeyOutput[] = {{"CiphertextBlob"}, {"Plaintext"}, {"KeyId"},
                                             {"CiphertextForRecipient"}, {"KeyMaterialId"}};
constexpr Member kGenerateDataKeyWithoutPlaintextOutput[] = {
    {"CiphertextBlob"}, {"KeyId"}, {"KeyMaterialId"}};
constexpr Member kGenerateRandomOutput[] = {{"Plaintext"}, {"CiphertextForRecipient"}};
constexpr Member kScheduleKeyDeletionOutput[] = {
    {"KeyId"}, {"DeletionDate"}, {"KeyState"}, {"PendingWindowInDays"}};
constexpr Member kKeyIdOutput[] = {{"KeyId"}};  // CancelKeyDeletion, RotateKeyOnDemand
constexpr Member kGetKeyRotationStatusOutput[] = {
    {"KeyRotationEnabled"}, {"KeyId"}, {"RotationPeriodInDays"}, {"NextRotationDate"},
    {"OnDemandRotationStartDate"}};
constexpr Member kListKeyRotationsOutput[] = {
    {"Rotations", &kRotationsListEntry}, {"NextMarker"}, {"Truncated"}};
constexpr Member kGetKeyPolicyOutput[] = {{"Policy"}, {"PolicyName"}};
constexpr Member kCreateCustomKeyStoreOutput[] = {{"CustomKeyStoreId"}};
constexpr Member kDescribeCustomKeyStoresOutput[] = {
    {"CustomKeyStores", &kCustomKeyStoresListEntry}, {"NextMarker"}, {"Truncated"}};
constexpr Member kListKeyPoliciesOutput[] = {{"PolicyNames"}, {"NextMarker"}, {"Truncated"}};
constexpr Member kCreateGrantOutput[] = {{"GrantToken"}, {"GrantId"}};
constexpr Member kListGrantsOutput[] = {
    {"Grants", &kGrantListEntry}, {"NextMarker"}, {"Truncated"}};
constexpr Member kSignOutput[] = {{"KeyId"}, {"Signature"}, {"SigningAlgorithm"}};
constexpr Member kVerifyOutput[] = {{"KeyId"}, {"SignatureValid"}, {"SigningAlgorithm"}};
constexpr Member kGetPublicKeyOutput[] = {
    {"KeyId"}, {"PublicKey"}, {"CustomerMasterKeySpec"}, {"KeySpec"}, {"KeyUsage"},
    {"EncryptionAlgorithms"}, {"SigningAlgorithms"}, {"KeyAgreementAlgorithms"}};
constexpr Member kGenerateMacOutput[] = {{"Mac"}, {"MacAlgorithm"}, {"KeyId"}};
constexpr Member kVerifyMacOutput[] = {{"KeyId"}, {"MacValid"}, {"MacAlgorithm"}};
constexpr Member kDeriveSharedSecretOutput[] = {
    {"KeyId"}, {"SharedSecret"}, {"CiphertextForRecipient"}, {"KeyAgreementAlgorithm"},
    {"KeyOrigin"}};
constexpr Member kGenerateDataKeyPairOutput[] = {
    {"PrivateKeyCiphertextBlob"}, {"PrivateKeyPlaintext"}, {"PublicKey"}, {"KeyId"},
    {"KeyPairSpec"}, {"CiphertextForRecipient"}, {"KeyMaterialId"}};
constexpr Member kKeyLastUsageMembers[] = {
    {"CloudTrailEventId"}, {"KmsRequestId"}, {"Operation"}, {"Timestamp"}};
constexpr Shape kKeyLastUsage{kKeyLastUsageMembers};
constexpr Member kGetKeyLastUsageOutput[] = {
    {"KeyId"}, {"KeyCreationDate"}, {"TrackingStartDate"}, {"KeyLastUsage", &kKeyLastUsage}};
constexpr Member kGetParametersForImportOutput[] = {
    {"KeyId"}, {"ImportToken"}, {"PublicKey"}, {"ParametersValidTo"}};
constexpr Member kImportKeyMaterialOutput[] = {{"KeyId"}, {"KeyMaterialId"}};
constexpr Member kReplicateKeyOutput[] = {
    {"ReplicaKeyMetadata", &kKeyMetadata}, {"ReplicaPolicy"}, {"ReplicaTags", &kTag}};
constexpr Member kListResourceTagsOutput[] = {{"Tags", &kTag}, {"NextMarker"}, {"Truncated"}};

struct Operation {
  std::string_view name;
  std::span<const Member> output;  // empty: AWS answers an empty structure
};

constexpr Operation kOperations[] = {
    {"CreateKey", kMetadataOutput},
    {"DescribeKey", kMetadataOutput},
    {"ListKeys", kListKeysOutput},
    {"CreateAlias", {}},
    {"UpdateAlias", {}},
    {"DeleteAlias", {}},
    {"ListAliases", kListAliasesOutput},
    {"Encrypt", kEncryptOutput},
    {"Decrypt", kDecryptOutput},
    {"ReEncrypt", kReEncryptOutput},
    {"GenerateDataKey", kGenerateDataKeyOutput},
    {"GenerateDataKeyWithoutPlaintext", kGenerateDataKeyWithoutPlaintextOutput},
    {"GenerateRandom", kGenerateRandomOutput},
    {"EnableKey", {}},
    {"DisableKey", {}},
    {"ScheduleKeyDeletion", kScheduleKeyDeletionOutput},
    {"CancelKeyDeletion", kKeyIdOutput},
    {"EnableKeyRotation", {}},
    {"DisableKeyRotation", {}},
    {"GetKeyRotationStatus", kGetKeyRotationStatusOutput},
    {"RotateKeyOnDemand", kKeyIdOutput},
    {"ListKeyRotations", kListKeyRotationsOutput},
    {"GetKeyPolicy", kGetKeyPolicyOutput},
    {"PutKeyPolicy", {}},
    {"ListKeyPolicies", kListKeyPoliciesOutput},
    {"UpdateKeyDescription", {}},
    {"GetKeyLastUsage", kGetKeyLastUsageOutput},
    {"ReplicateKey", kReplicateKeyOutput},
    {"UpdatePrimaryRegion", {}},
    {"GetParametersForImport", kGetParametersForImportOutput},
    {"ImportKeyMaterial", kImportKeyMaterialOutput},
    {"DeleteImportedKeyMaterial", kImportKeyMaterialOutput},
    {"TagResource", {}},
    {"UntagResource", {}},
    {"ListResourceTags", kListResourceTagsOutput},
    {"CreateCustomKeyStore", kCreateCustomKeyStoreOutput},
    {"DescribeCustomKeyStores", kDescribeCustomKeyStoresOutput},
    {"ConnectCustomKeyStore", {}},
    {"DisconnectCustomKeyStore", {}},
    {"DeleteCustomKeyStore", {}},
    {"UpdateCustomKeyStore", {}},
    {"CreateGrant", kCreateGrantOutput},
    {"ListGrants", kListGrantsOutput},
    {"ListRetirableGrants", kListGrantsOutput},
    {"RetireGrant", {}},
    {"Sign", kSignOutput},
    {"Verify", kVerifyOutput},
    {"GetPublicKey", kGetPublicKeyOutput},
    {"GenerateMac", kGenerateMacOutput},
    {"VerifyMac", kVerifyMacOutput},
    {"DeriveSharedSecret", kDeriveSharedSecretOutput},
    {"GenerateDataKeyPair", kGenerateDataKeyPairOutput},
    {"GenerateDataKeyPairWithoutPlaintext", kGenerateDataKeyPairOutput},
    {"RevokeGrant", {}},
};

const Operation* FindOperation(std::string_view name) {
  for (const Operation& op : kOperations) {
    if (op.name == name) return &op;
  }
  return nullptr;
}

void Strip(std::span<const Member> members, nlohmann::json* value) {
  if (!value->is_object()) return;
  for (auto it = value->begin(); it != value->end();) {
    const Member* member = nullptr;
    for (const Member& m : members) {
      if (m.name == it.key()) member = &m;
    }
    if (member == nullptr) {
      it = value->erase(it);
      continue;
    }
    if (member->shape != nullptr) {
      if (it->is_array()) {
        for (nlohmann::json& element : *it) Strip(member->shape->members, &element);
      } else {
        Strip(member->shape->members, &*it);
      }
    }
    ++it;
  }
}

}  // namespace

bool IsStandardOperation(std::string_view operation) {
  return FindOperation(operation) != nullptr;
}

void StripToStandardApi(std::string_view operation, nlohmann::json* response) {
  const Operation* op = FindOperation(operation);
  Strip(op != nullptr ? op->output : std::span<const Member>(), response);
}

}  // namespace envelope::keyservice
