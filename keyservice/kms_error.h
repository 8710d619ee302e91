// The one error type of the key service's operations, and the one macro
// that returns it: what a request's field reads (kms_request.h), pagination
// (kms_paginate.h), the checks (Resolve, Authorize, RequireUsable) and the
// operations themselves all fail with.
#ifndef ENVELOPE_KEYSERVICE_KMS_ERROR_H_
#define ENVELOPE_KEYSERVICE_KMS_ERROR_H_

#include <string>

namespace envelope::keyservice {

struct KmsError {
  std::string type;     // AWS's error type, the answer's "__type"
  std::string message;  // the answer's "message"
  int http_status = 400;
};

}  // namespace envelope::keyservice

// Inside a function returning a KmsError (or something a KmsError converts
// to, as an operation's Outcome): returns the error `expr` holds, if it
// holds one (`expr` is a std::optional<KmsError>).
#define KMS_TRY(expr)                             \
  do {                                            \
    if (auto kms_error_ = (expr)) return *kms_error_; \
  } while (0)

#endif  // ENVELOPE_KEYSERVICE_KMS_ERROR_H_
