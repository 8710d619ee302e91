// StandardKms: the KeyService over AWS KMS's published API, and nothing
// else: DescribeKey, ListKeyRotations, GenerateDataKey, Decrypt, Encrypt,
// ReEncrypt (docs/KEYSERVICE.md, "Which features need which operations").
// Blobs are opaque; there is no batching and no version number, so the
// current version is known by the date of the key's newest rotation.
// Speaks to AWS KMS itself, to any KMS-compatible service, and to
// envelope-keyd (with or without --standard-only).
//
// The transport is a KmsClient (kms/kms_client.h); the raw client stays
// reachable for tools that are thin front ends to the KMS API itself
// (envelopectl key ...).
//
// Thread safety: thread-safe, as KmsClient is.
#ifndef ENVELOPE_KMS_STANDARD_KMS_SERVICE_H_
#define ENVELOPE_KMS_STANDARD_KMS_SERVICE_H_

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kms/key_service.h"
#include "kms/kms_client.h"

namespace envelope::kms {

class StandardKms : public KeyService {
 public:
  explicit StandardKms(std::unique_ptr<KmsClient> client);

  std::string Name() const override;
  StatusOr<KeyInfo> DescribeKey(const std::string& key) override;
  StatusOr<CurrentVersion> DescribeCurrentVersion(const std::string& key) override;
  StatusOr<std::vector<DataKey>> GenerateDataKeys(
      const std::string& key, const std::vector<EncryptionContextMap>& contexts) override;
  StatusOr<crypto::SecretBytes> Decrypt(ByteView blob, const EncryptionContextMap& context,
                                        const std::string& key_id) override;
  StatusOr<Bytes> Encrypt(const std::string& key, ByteView plaintext,
                          const EncryptionContextMap& context) override;
  StatusOr<Bytes> ReEncrypt(ByteView blob, const std::string& source_key_id,
                            const EncryptionContextMap& source_context,
                            const std::string& destination_key,
                            const EncryptionContextMap& destination_context) override;
  void CloseConnections() override;

  KmsClient& client() { return *client_; }

 protected:
  // DescribeKey's KeyMetadata object, with KeyId and Arn checked to be
  // strings.
  StatusOr<nlohmann::json> DescribeKeyMetadata(const std::string& key);
  // KeyInfo from that object (the standard fields only).
  static KeyInfo StandardKeyInfo(const nlohmann::json& metadata);
  // Every rotation of `key_id` (ListKeyRotations, all pages).
  StatusOr<std::vector<nlohmann::json>> ListRotations(const std::string& key_id);
  // The standard answer: the newest RotationDate, else the CreationDate.
  StatusOr<CurrentVersion> CurrentVersionByDate(const nlohmann::json& metadata);

 private:
  // The pooled connections; replaced by a fresh client on CloseConnections.
  std::unique_ptr<KmsClient> client_;
};

}  // namespace envelope::kms

#endif  // ENVELOPE_KMS_STANDARD_KMS_SERVICE_H_
