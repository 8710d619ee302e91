// FakeKeyService: an in-memory key service for unit tests of the layers
// above the KeyService seam (fs::Volume, rotate, fsck, secrets). It keeps
// AWS KMS's observable rules that those layers depend on: pinned unwraps
// (IncorrectKeyException), encryption-context binding
// (InvalidCiphertextException), key states (DisabledException,
// KMSInvalidStateException), versions that ReEncrypt moves blobs to, and
// aliases. Errors carry the AWS type first, as kms_client.h describes.
//
// Blobs are AES-256-GCM under the key version's material, prefixed with
// the key and version. With `labelled` set, VersionOf reads that prefix
// (like envelope-keyd's public label); without, blobs are opaque to the
// caller (like AWS KMS's), which exercises the standard-API code paths.
//
// Not for production: the master key material lives in SecretBytes but is
// never persisted.
//
// Thread safety: thread-safe (one mutex).
#ifndef ENVELOPE_KMS_FAKE_KEY_SERVICE_H_
#define ENVELOPE_KMS_FAKE_KEY_SERVICE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kms/key_service.h"

namespace envelope::kms {

class FakeKeyService : public KeyService {
 public:
  explicit FakeKeyService(bool labelled = true);
  ~FakeKeyService() override;

  // --- Test controls. ---

  // A new enabled key, optionally reachable as alias/NAME; returns its ARN.
  std::string CreateKey(const std::string& alias = "");
  // Points alias/NAME at `key` (created or moved).
  void SetAlias(const std::string& alias, const std::string& key);
  // A new current version of `key` (RotateKeyOnDemand).
  void RotateKey(const std::string& key);
  // "Enabled", "Disabled", "PendingDeletion".
  void SetKeyState(const std::string& key, const std::string& state);
  // The creator DescribeKey reports as foreign ("" = the caller).
  void SetForeignCreator(const std::string& key, const std::string& creator);
  // After `calls` more successful calls, every call fails Unavailable (as if
  // the service died) until Restore(); -1 = never.
  void FailAfter(int64_t calls);
  void Restore() { FailAfter(-1); }
  // Whether DescribeCurrentVersion can say (false: as if ListKeyRotations
  // were denied by policy).
  void SetVersionsVisible(bool visible);
  // How many times `operation` ("Decrypt", "ReEncrypt", ...) was called.
  // A ReEncryptMany call counts once as "ReEncryptMany" and once per item
  // as "ReEncrypt" (FailAfter counts items).
  int64_t Calls(const std::string& operation) const;
  // The version `blob` is under, whatever `labelled` says.
  uint32_t VersionInBlob(ByteView blob) const;

  // --- KeyService. ---

  std::string Name() const override { return "fake:"; }
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
  std::vector<StatusOr<Bytes>> ReEncryptMany(std::span<const ReEncryptItem> items,
                                             const std::string& destination_key) override;
  std::optional<BlobVersion> VersionOf(ByteView blob) const override;

 private:
  struct Key {
    std::string id;
    std::string arn;
    std::string state = "Enabled";
    std::string foreign_creator;
    std::vector<crypto::SecretBytes> versions;  // [0] is version 1
    std::vector<double> version_dates;
  };

  // REQUIRES: mu_ held, for all of these.
  Status Admit(const char* operation);
  StatusOr<Key*> Find(const std::string& key);
  StatusOr<Key*> FindUsable(const std::string& key);
  StatusOr<Bytes> Seal(Key* key, ByteView plaintext, const EncryptionContextMap& context);
  StatusOr<crypto::SecretBytes> Open(ByteView blob, const EncryptionContextMap& context,
                                     const std::string& pinned_key);

  const bool labelled_;
  mutable std::mutex mu_;  // guards everything below
  std::map<std::string, std::unique_ptr<Key>> keys_;  // by id
  std::map<std::string, std::string> aliases_;        // "alias/x" -> id
  std::map<std::string, int64_t> calls_;
  int64_t calls_left_ = -1;
  bool versions_visible_ = true;
  double clock_ = 1'700'000'000;  // a fake epoch clock: one second per event
};

}  // namespace envelope::kms

#endif  // ENVELOPE_KMS_FAKE_KEY_SERVICE_H_
