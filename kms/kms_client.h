// KmsClient: the client of the key service's AWS KMS JSON 1.1 protocol
// (docs/KEYSERVICE.md), over a Unix socket, SigV4-signed loopback TCP, or
// SigV4-signed HTTPS (AWS KMS itself, or envelope-keyd behind TLS).
//
// A request is HTTP/1.1 "POST /" with Content-Type
// application/x-amz-json-1.1, X-Amz-Target "TrentService.<Operation>" (AWS
// operations) or "EnvelopeKeyService.<Operation>" (the extensions), and a
// JSON body; blobs are base64, dates epoch seconds. Success is 200 with a
// JSON body; an error is 4xx/5xx with {"__type": T, "message": M}.
//
// Errors become Status values whose message starts with the AWS error type
// ("NotFoundException: Key '...' does not exist"), with these codes:
//   NotFoundException                          kNotFound
//   AccessDeniedException                      kPermissionDenied
//   AlreadyExistsException                     kAlreadyExists
//   InvalidCiphertextException,
//   IncorrectKeyException                      kCorruption
//   DisabledException, KMSInvalidStateException kFailedPrecondition
//   ThrottlingException, KMSInternalException,
//   any other 5xx, connection failures         kUnavailable
//   everything else                            kInvalidArgument
// KmsErrorType() recovers the type. Connection failures name the endpoint:
// "cannot reach the key service at unix:/run/...: Connection refused".
//
// Retries: connection failures, ThrottlingException, KMSInternalException
// and HTTP 5xx are retried up to Options::max_retries times, with
// exponential backoff and full jitter (sleep uniform in [0, min(10 s,
// backoff_base * 2^n)]). A non-idempotent operation (CreateKey, the alias,
// state, rotation, policy and tag mutations, RetireKeyVersions, and any
// operation this client does not know) is retried only if the request was
// never completely written, i.e. the service cannot have acted on it.
//
// Secrets: plaintext in a response (Decrypt, GenerateDataKey,
// GenerateRandom) is wiped from the response body buffer after parsing; the
// typed helpers decode it from base64 straight into crypto::SecretBytes and
// wipe the JSON string that carried it. A request "Plaintext" member
// (Encrypt) is serialised into a buffer allocated once at its final size and
// wiped after sending. Limitation: nlohmann::json's parser keeps a
// transient copy of each token in its own std::allocator buffers, which are
// freed without wiping; Call() returns plaintext to its caller as a base64
// JSON string in ordinary memory, so code handling keys should use the typed
// helpers.
//
// Thread safety: all methods are thread-safe. Idle keep-alive connections
// are pooled behind a mutex; concurrent calls use separate connections, and
// the mutex is never held during I/O.
#ifndef ENVELOPE_KMS_KMS_CLIENT_H_
#define ENVELOPE_KMS_KMS_CLIENT_H_

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/base/coding.h"
#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"
#include "kms/endpoint.h"
#include "kms/http_transport.h"
#include "kms/key_service.h"
#include "kms/kms_errors.h"
#include "kms/operations.h"
#include "kms/sigv4.h"

namespace envelope::kms {

// The X-Amz-Target prefixes (kms/operations.h).
inline constexpr std::string_view kTrentServicePrefix = kAwsTargetPrefix;
inline constexpr std::string_view kExtensionServicePrefix = kExtensionTargetPrefix;
// envelope-keyd's limit on GenerateDataKeys (docs/KEYSERVICE.md).
inline constexpr size_t kMaxDataKeysPerRequest = 256;
// envelope-keyd's limits on ReEncryptBatch: items per request, and the
// body of any request (docs/KEYSERVICE.md).
inline constexpr size_t kMaxReEncryptsPerRequest = 128;
inline constexpr size_t kMaxKeydRequestBodyBytes = 64 * 1024;
inline constexpr char kKmsSigningService[] = "kms";

class KmsClient {
 public:
  struct Options {
    Endpoint endpoint;
    // Required for an http or https endpoint (every request is signed);
    // unused over the Unix socket, where the service identifies callers by
    // uid.
    std::optional<Credentials> credentials;
    // The SigV4 signing region (AwsSigningRegion, kms/aws_config.h).
    std::string region = "us-east-1";
    // https: a PEM file of CA certificates to trust instead of the system's
    // default store (TlsOptions); "" for the system store.
    std::string ca_file;
    std::chrono::milliseconds connect_timeout{2000};
    // For one attempt: writing the request and reading the whole response.
    std::chrono::milliseconds request_timeout{15000};
    int max_retries = 4;
    std::chrono::milliseconds backoff_base{50};
  };

  // Checks the options; connects lazily, so a client can be made while the
  // service is down. InvalidArgument for an http or https endpoint without
  // credentials or region, a negative retry count, or non-positive
  // timeouts. A TLS handshake that fails verification is not retried
  // (FailedPrecondition, see HttpConnection::Connect).
  static StatusOr<std::unique_ptr<KmsClient>> New(Options options);

  KmsClient(const KmsClient&) = delete;
  KmsClient& operator=(const KmsClient&) = delete;
  ~KmsClient();

  // Sends `request` (a JSON object) as `target`, the full X-Amz-Target
  // value (e.g. "TrentService.DescribeKey"), and returns the response
  // object. Errors as described at the top of this file.
  StatusOr<nlohmann::json> Call(std::string_view target,
                                const nlohmann::json& request);
  // Call for a paginated list operation: sends `request`, hands each
  // response page to `on_page`, and sends again with Marker = the page's
  // NextMarker while the page says Truncated (and the marker moves on).
  Status CallEachPage(std::string_view target, nlohmann::json request,
                      const std::function<void(nlohmann::json& page)>& on_page);

  // GenerateDataKey with NumberOfBytes. `key_id` is a key id, key ARN,
  // alias name or alias ARN.
  StatusOr<DataKey> GenerateDataKey(const std::string& key_id,
                                    const EncryptionContextMap& context,
                                    size_t number_of_bytes = 32);
  // EnvelopeKeyService.GenerateDataKeys: one data key per context, in the
  // order given, all under one version of the key; at most
  // kMaxDataKeysPerRequest contexts. A key service without the extension
  // (AWS KMS itself) answers UnknownOperationException.
  StatusOr<std::vector<DataKey>> GenerateDataKeys(
      const std::string& key_id, const std::vector<EncryptionContextMap>& contexts,
      size_t number_of_bytes = 32);
  // Decrypt, pinned: `key_id` must name the key that encrypted `blob`
  // (IncorrectKeyException otherwise), so that a blob someone swapped for
  // one under a key of their own is refused rather than trusted. Required:
  // an empty `key_id` is InvalidArgument and nothing is sent.
  StatusOr<crypto::SecretBytes> Decrypt(ByteView blob,
                                        const EncryptionContextMap& context,
                                        const std::string& key_id);
  StatusOr<Bytes> Encrypt(const std::string& key_id, ByteView plaintext,
                          const EncryptionContextMap& context);
  // ReEncrypt: the service opens `blob` under `source_context` and seals
  // the plaintext under the current version of `destination_key_id`; the
  // plaintext never leaves the service. `source_key_id` (SourceKeyId) pins
  // the key `blob` must be under, as Decrypt's `key_id`; required.
  StatusOr<Bytes> ReEncrypt(ByteView blob, const std::string& source_key_id,
                            const EncryptionContextMap& source_context,
                            const std::string& destination_key_id,
                            const EncryptionContextMap& destination_context);

  // EnvelopeKeyService.ReEncryptBatch: ReEncrypt of every item to the
  // current version of `destination_key_id`, in one request of 1 to
  // kMaxReEncryptsPerRequest items (ReEncryptBatchBodySize says whether
  // they fit one body). One result per item, in order: the new blob, or
  // the item's own error as a Status like ReEncrypt's. The outer Status is
  // the request's (every item's, then); a key service without the
  // extension (AWS KMS itself) answers UnknownOperationException.
  StatusOr<std::vector<StatusOr<Bytes>>> ReEncryptBatch(std::span<const ReEncryptItem> items,
                                                        const std::string& destination_key_id);

  const Endpoint& endpoint() const { return options_.endpoint; }

  // Closes the pooled idle connections (before execve: the program started
  // inherits none). Later calls connect again.
  void CloseIdleConnections();

 private:
  explicit KmsClient(Options options);

  // One request with retries. `body` is owned for the duration and wiped
  // at the end if the operation carries plaintext in its request.
  StatusOr<nlohmann::json> Send(std::string_view target, std::string body);
  Status SignInto(std::string_view target, HttpRequest* request) const;

  // A pooled connection that still looks alive, or a new one.
  StatusOr<std::unique_ptr<HttpConnection>> Acquire();
  void Release(std::unique_ptr<HttpConnection> connection);

  std::chrono::milliseconds Backoff(int retry) const;

  const Options options_;
  const std::string endpoint_name_;

  std::mutex mu_;
  std::vector<std::unique_ptr<HttpConnection>> idle_;  // guarded by mu_
};

// Who made a key, from DescribeKey's KeyMetadata (the envelope-keyd
// extension field "Creator", docs/KEYSERVICE.md), when that is another
// principal than the caller and not root: a client led to such a key by an
// alias, a secrets file or a volume config should warn, since the key's
// creator can read whatever is encrypted under it and can destroy it.
// "" when the key is the caller's or root's, when the service does not say
// (AWS KMS has no such field: unknown, no warning), or when the caller's own
// principal is unknown to it (over TCP it is the access key's name, which
// only the service knows). Over `endpoint`'s Unix socket the caller is the
// effective uid, named as the service names it ("user:NAME" or "uid:N").
std::string ForeignKeyCreator(const nlohmann::json& key_metadata, const Endpoint& endpoint);

// The bytes `item` adds to a ReEncryptBatch body (its JSON object and a
// comma), and the bytes of the body around the items: exact, so that a
// client can fill a request up to kMaxKeydRequestBodyBytes.
size_t ReEncryptBatchItemSize(const ReEncryptItem& item);
size_t ReEncryptBatchBodySize(const std::string& destination_key_id);

}  // namespace envelope::kms

#endif  // ENVELOPE_KMS_KMS_CLIENT_H_
