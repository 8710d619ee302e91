#include "kms/operations.h"

namespace envelope::kms {

namespace {

constexpr bool kAws = false, kExt = true;
constexpr bool kOnce = false, kAgain = true;  // idempotent?
constexpr uint8_t kNo = Operation::kNone, kReq = Operation::kRequest,
                  kResp = Operation::kResponse;

constexpr Operation kOperations[] = {
    // name                              target  idempotent  sensitive
    {"CreateKey",                        kAws, kOnce,  kNo},
    {"DescribeKey",                      kAws, kAgain, kNo},
    {"ListKeys",                         kAws, kAgain, kNo},
    {"CreateAlias",                      kAws, kOnce,  kNo},
    {"UpdateAlias",                      kAws, kOnce,  kNo},
    {"DeleteAlias",                      kAws, kOnce,  kNo},
    {"ListAliases",                      kAws, kAgain, kNo},
    {"Encrypt",                          kAws, kAgain, kReq},
    {"Decrypt",                          kAws, kAgain, kResp},
    {"ReEncrypt",                        kAws, kAgain, kNo},
    {"GenerateDataKey",                  kAws, kAgain, kResp},
    {"GenerateDataKeyWithoutPlaintext",  kAws, kAgain, kNo},
    {"GenerateRandom",                   kAws, kAgain, kResp},
    {"EnableKey",                        kAws, kOnce,  kNo},
    {"DisableKey",                       kAws, kOnce,  kNo},
    {"ScheduleKeyDeletion",              kAws, kOnce,  kNo},
    {"CancelKeyDeletion",                kAws, kOnce,  kNo},
    {"EnableKeyRotation",                kAws, kOnce,  kNo},
    {"DisableKeyRotation",               kAws, kOnce,  kNo},
    {"GetKeyRotationStatus",             kAws, kAgain, kNo},
    {"RotateKeyOnDemand",                kAws, kOnce,  kNo},
    {"ListKeyRotations",                 kAws, kAgain, kNo},
    {"GetKeyPolicy",                     kAws, kAgain, kNo},
    {"PutKeyPolicy",                     kAws, kOnce,  kNo},
    {"ListKeyPolicies",                  kAws, kAgain, kNo},
    {"UpdateKeyDescription",             kAws, kOnce,  kNo},
    {"GetKeyLastUsage",                  kAws, kAgain, kNo},
    {"GetParametersForImport",           kAws, kOnce,  kNo},
    {"ImportKeyMaterial",                kAws, kOnce,  kReq},   // wrapped key material
    {"DeleteImportedKeyMaterial",        kAws, kOnce,  kNo},
    {"TagResource",                      kAws, kOnce,  kNo},
    {"UntagResource",                    kAws, kOnce,  kNo},
    {"ListResourceTags",                 kAws, kAgain, kNo},
    {"CreateCustomKeyStore",             kAws, kOnce,  kReq},   // KeyStorePassword
    {"DescribeCustomKeyStores",          kAws, kAgain, kNo},
    {"ConnectCustomKeyStore",            kAws, kOnce,  kNo},
    {"DisconnectCustomKeyStore",         kAws, kOnce,  kNo},
    {"DeleteCustomKeyStore",             kAws, kOnce,  kNo},
    {"UpdateCustomKeyStore",             kAws, kOnce,  kReq},   // KeyStorePassword
    {"CreateGrant",                      kAws, kOnce,  kNo},
    {"ListGrants",                       kAws, kAgain, kNo},
    {"ListRetirableGrants",              kAws, kAgain, kNo},
    {"RetireGrant",                      kAws, kOnce,  kNo},
    {"RevokeGrant",                      kAws, kOnce,  kNo},
    {"Sign",                             kAws, kAgain, kNo},
    {"Verify",                           kAws, kAgain, kNo},
    {"GetPublicKey",                     kAws, kAgain, kNo},
    {"GenerateMac",                      kAws, kAgain, kNo},
    {"VerifyMac",                        kAws, kAgain, kNo},
    {"DeriveSharedSecret",               kAws, kAgain, kResp},
    {"GenerateDataKeyPair",              kAws, kAgain, kResp},
    {"GenerateDataKeyPairWithoutPlaintext", kAws, kAgain, kNo},
    {"ReplicateKey",                     kAws, kOnce,  kNo},
    {"UpdatePrimaryRegion",              kAws, kOnce,  kNo},
    {"ReplicaSync",                      kExt, kOnce,  kReq},   // key material, to a replica
    {"RetireKeyVersions",                kExt, kOnce,  kNo},
    {"GenerateDataKeys",                 kExt, kAgain, kResp},
    {"ReEncryptBatch",                   kExt, kAgain, kNo},
    {"VerifyAudit",                      kExt, kAgain, kNo},
    {"TailAudit",                        kExt, kAgain, kNo},
    {"Backup",                           kExt, kOnce,  kResp},  // the recovery key's shares
    {"RotateRootKey",                    kExt, kOnce,  kReq},   // NewPassphrase, Pin
};

}  // namespace

std::span<const Operation> Operations() { return kOperations; }

const Operation* FindOperation(std::string_view target) {
  const bool ext = target.rfind(kExtensionTargetPrefix, 0) == 0;
  if (!ext && target.rfind(kAwsTargetPrefix, 0) != 0) return nullptr;
  const std::string_view name =
      target.substr(ext ? kExtensionTargetPrefix.size() : kAwsTargetPrefix.size());
  for (const Operation& op : kOperations) {
    if (op.extension == ext && op.name == name) return &op;
  }
  return nullptr;
}

}  // namespace envelope::kms
