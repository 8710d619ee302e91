// KeydKeyService: the KeyService over envelope-keyd, using its extensions
// where they help (docs/KEYSERVICE.md, "Extensions"):
//   * GenerateDataKeys: up to 256 data keys in one request (falls back to
//     one GenerateDataKey each if the service answers UnknownOperation,
//     as a keyd started with --standard-only does);
//   * ReEncryptBatch: up to 128 re-wraps in one request (falls back to one
//     ReEncrypt each on UnknownOperation, the same way);
//   * DescribeKey's CurrentKeyVersion and Creator fields;
//   * the public blob label (kms/blob_label.h), so a rotation can tell
//     which blobs are already under the current version without asking.
// Everything else is StandardKms.
//
// Thread safety: thread-safe.
#ifndef ENVELOPE_KMS_KEYD_KEY_SERVICE_H_
#define ENVELOPE_KMS_KEYD_KEY_SERVICE_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "kms/standard_kms_service.h"

namespace envelope::kms {

class KeydKeyService : public StandardKms {
 public:
  explicit KeydKeyService(std::unique_ptr<KmsClient> client);

  StatusOr<KeyInfo> DescribeKey(const std::string& key) override;
  StatusOr<CurrentVersion> DescribeCurrentVersion(const std::string& key) override;
  StatusOr<std::vector<DataKey>> GenerateDataKeys(
      const std::string& key, const std::vector<EncryptionContextMap>& contexts) override;
  std::vector<StatusOr<Bytes>> ReEncryptMany(std::span<const ReEncryptItem> items,
                                             const std::string& destination_key) override;
  std::optional<BlobVersion> VersionOf(ByteView blob) const override;

 private:
  // Until the service answers UnknownOperation to GenerateDataKeys,
  // ReEncryptBatch.
  std::atomic<bool> has_batches_{true};
  std::atomic<bool> has_rewrap_batches_{true};
};

}  // namespace envelope::kms

#endif  // ENVELOPE_KMS_KEYD_KEY_SERVICE_H_
