// The key service's operations, one row each: the AWS KMS operations
// envelope-keyd implements (X-Amz-Target TrentService.NAME) and its
// extensions (EnvelopeKeyService.NAME). What a row says is read by both
// sides: the client (kms_client.cc) retries only idempotent operations and
// wipes the bodies that carry plaintext or a secret; envelope-keyd
// (keyservice/kms_service.cc) dispatches exactly these, and a test checks
// that every row has a handler and every handler a row. Adding an
// operation is one row here and one handler there.
#ifndef ENVELOPE_KMS_OPERATIONS_H_
#define ENVELOPE_KMS_OPERATIONS_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace envelope::kms {

inline constexpr std::string_view kAwsTargetPrefix = "TrentService.";
inline constexpr std::string_view kExtensionTargetPrefix = "EnvelopeKeyService.";

struct Operation {
  // What a body may carry that must be wiped once used: plaintext (data,
  // data keys, random bytes) or a secret (a PIN, a passphrase, backup
  // shares). Bits.
  enum Sensitive : uint8_t { kNone = 0, kRequest = 1, kResponse = 2 };

  std::string_view name;  // "Decrypt"
  bool extension;         // EnvelopeKeyService.NAME, else TrentService.NAME
  // Safe to send again when the first answer was lost: doing it twice has
  // the effect of doing it once (a second data key is as good as the
  // first). Changes of state (a second key, a second rotation) are not.
  bool idempotent;
  uint8_t sensitive;

  std::string target() const {
    return std::string(extension ? kExtensionTargetPrefix : kAwsTargetPrefix) + std::string(name);
  }
  bool request_sensitive() const { return (sensitive & kRequest) != 0; }
  bool response_sensitive() const { return (sensitive & kResponse) != 0; }
};

std::span<const Operation> Operations();

// The row for a whole X-Amz-Target ("TrentService.Decrypt"), or null.
const Operation* FindOperation(std::string_view target);

}  // namespace envelope::kms

#endif  // ENVELOPE_KMS_OPERATIONS_H_
