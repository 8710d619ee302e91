// The key service's answers as Status values, and which failures are worth
// a retry: the pieces of KmsClient::Call() that need no service (the error
// mapping is described in kms_client.h), exposed for tests.
#ifndef ENVELOPE_KMS_KMS_ERRORS_H_
#define ENVELOPE_KMS_KMS_ERRORS_H_

#include <string>
#include <string_view>

#include "core/base/status.h"

namespace envelope::kms {

// The Status for an HTTP response from the key service: OK for 2xx, else the
// mapping above. `endpoint_name` appears in messages for responses without
// an AWS error type (e.g. a bare HTTP 502).
Status StatusFromKmsResponse(int http_status, std::string_view body,
                             std::string_view endpoint_name);

// The Status for AWS error `type` with `message` (an error answer, or one
// item of a batch that failed), by the mapping in kms_client.h.
Status StatusFromKmsError(const std::string& type, const std::string& message,
                          int http_status = 400);

// The AWS error type a Status from KmsClient starts with
// ("NotFoundException"), or "" if it has none (OK, connection failures).
std::string KmsErrorType(const Status& status);

// True for operations that may safely be sent twice: reads, and the
// cryptographic operations (a second Encrypt or GenerateDataKey only makes
// another ciphertext). `target` is the full X-Amz-Target value.
bool IsIdempotentOperation(std::string_view target);

// Whether an attempt that ended in `status` is worth repeating: the status
// is kUnavailable (a connection failure, throttling, an internal error,
// HTTP 5xx) and either the request was never completely written or the
// operation is idempotent.
bool ShouldRetry(std::string_view target, const Status& status,
                 bool request_written);

}  // namespace envelope::kms

#endif  // ENVELOPE_KMS_KMS_ERRORS_H_
