// KeyService: what the filesystem and the tools need from a key service,
// and nothing more (in the spirit of Tink's KmsClient): make data keys,
// unwrap them, re-wrap them to the current version of a key or to another
// key, describe a key, encrypt a small value. Every caller above the kms
// layer (fs::Volume, rotate, fsck, the secrets commands) goes through this
// interface only; a new KMS backend is one implementation of it.
//
// Implementations:
//   StandardKmsService (kms/standard_kms_service.h)  AWS KMS's published API only
//   KeydKeyService     (kms/keyd_key_service.h)      envelope-keyd, with its extensions
//   FakeKeyService     (kms/fake_key_service.h)      in memory, for unit tests
// ConnectKeyService (kms/connect.h) builds one from an endpoint.
//
// Errors are Status values whose message starts with the AWS error type
// ("IncorrectKeyException: ..."), with the codes kms_client.h lists, so
// that KmsErrorType() reads the type back whichever implementation made
// it. kUnavailable means the service could not be reached or asked for a
// retry later; callers that walk a volume stop on it.
//
// Pinning: every unwrap names the key the blob must be under (Decrypt's
// KeyId, ReEncrypt's SourceKeyId), so that a blob swapped for one under
// somebody else's key is refused by the service (IncorrectKeyException,
// kCorruption) rather than trusted.
//
// Thread safety: implementations are thread-safe.
#ifndef ENVELOPE_KMS_KEY_SERVICE_H_
#define ENVELOPE_KMS_KEY_SERVICE_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/base/coding.h"
#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"

namespace envelope::kms {

using EncryptionContextMap = std::map<std::string, std::string>;

struct DataKey {
  crypto::SecretBytes plaintext;
  Bytes ciphertext_blob;
  std::string key_arn;  // the key that wrapped it, as the service names it
};

struct KeyInfo {
  std::string key_id;  // the key's id (a UUID for both AWS and envelope-keyd)
  std::string arn;
  std::string state;   // KeyState: "Enabled", "Disabled", "PendingDeletion", ...
  // Set when the service says another principal than the caller (and not
  // root) made the key: its creator can read whatever is under it and can
  // destroy it, so a client led to it by an alias or a file should warn.
  // "" when the key is the caller's or the service does not say (AWS).
  std::string foreign_creator;
};

// The version of a key that seals new data now.
struct CurrentVersion {
  // Changes exactly when the key gets a new version: the version number
  // (envelope-keyd), or the date of the newest rotation with the number of
  // rotations, or the key's creation date if it was never rotated
  // (ListKeyRotations, AWS). "" if the service cannot say (the caller may
  // not ListKeyRotations).
  std::string marker;
  std::optional<uint32_t> number;  // envelope-keyd's version number
  double since = 0;  // epoch seconds it came into force; 0 if unknown
};

// One blob to re-wrap (KeyService::ReEncryptMany): what ReEncrypt takes,
// but for the destination key, which is the batch's.
struct ReEncryptItem {
  ByteView blob;              // must outlive the call
  std::string source_key_id;  // the pin: required
  EncryptionContextMap source_context;
  EncryptionContextMap destination_context;
};

// What a blob says about itself without asking the service.
struct BlobVersion {
  std::string key_id;  // lower-case UUID
  uint32_t version = 0;
  size_t plaintext_size = 0;  // bytes the blob seals
};

class KeyService {
 public:
  virtual ~KeyService() = default;

  // The endpoint, in the form a user would write it, for messages
  // ("unix:/run/envelope-keyd/kms.sock", "https://kms.eu-west-1.amazonaws.com").
  virtual std::string Name() const = 0;

  // `key`: a key id, key ARN, alias name or alias ARN.
  virtual StatusOr<KeyInfo> DescribeKey(const std::string& key) = 0;
  virtual StatusOr<CurrentVersion> DescribeCurrentVersion(const std::string& key) = 0;

  // One data key (32 bytes) per context, in order, all under `key`;
  // batched where the service can. If the service fails part way, the keys
  // made so far (at least one) are returned; an error only if none was.
  virtual StatusOr<std::vector<DataKey>> GenerateDataKeys(
      const std::string& key, const std::vector<EncryptionContextMap>& contexts) = 0;
  StatusOr<DataKey> GenerateDataKey(const std::string& key, const EncryptionContextMap& context);

  // Pinned (see above): `key_id` is required.
  virtual StatusOr<crypto::SecretBytes> Decrypt(ByteView blob,
                                                const EncryptionContextMap& context,
                                                const std::string& key_id) = 0;
  virtual StatusOr<Bytes> Encrypt(const std::string& key, ByteView plaintext,
                                  const EncryptionContextMap& context) = 0;
  // The service opens `blob` (pinned to `source_key_id`) and seals its
  // plaintext under the current version of `destination_key`; the
  // plaintext never leaves the service.
  virtual StatusOr<Bytes> ReEncrypt(ByteView blob, const std::string& source_key_id,
                                    const EncryptionContextMap& source_context,
                                    const std::string& destination_key,
                                    const EncryptionContextMap& destination_context) = 0;
  // ReEncrypt of every item to the current version of `destination_key`:
  // one result per item, in order, each what ReEncrypt would have returned
  // for it (an item fails alone). Batched where the service can
  // (envelope-keyd's ReEncryptBatch, many blobs a request); otherwise one
  // ReEncrypt each, which is this default.
  virtual std::vector<StatusOr<Bytes>> ReEncryptMany(std::span<const ReEncryptItem> items,
                                                     const std::string& destination_key);

  // Optional capability: the key and version `blob` is under and the size
  // of what it seals, read from the blob itself (envelope-keyd's public
  // blob label). nullopt when the
  // service's blobs are opaque (AWS KMS), or `blob` is not one of its.
  virtual std::optional<BlobVersion> VersionOf(ByteView blob) const;

  // Closes pooled connections (before execve, so that the new program
  // inherits none). Later calls reconnect.
  virtual void CloseConnections() {}
};

}  // namespace envelope::kms

#endif  // ENVELOPE_KMS_KEY_SERVICE_H_
