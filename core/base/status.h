// Status and StatusOr<T>: errors as values across every module boundary.
//
// Modelled on leveldb's Status and absl::StatusOr. No exceptions cross a
// module boundary; a libfuse callback turns a Status into an errno with
// ToErrno() and nothing else.
//
// Thread safety: values; a const Status may be read from any thread.
#ifndef ENVELOPE_CORE_BASE_STATUS_H_
#define ENVELOPE_CORE_BASE_STATUS_H_

#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace envelope {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument,     // the caller passed something malformed
  kNotFound,            // a normal "no such thing" result
  kAlreadyExists,
  kPermissionDenied,
  kFailedPrecondition,  // valid request, wrong state (e.g. key disabled)
  kCorruption,          // stored data failed validation or authentication
  kIoError,             // an OS call failed; sys_errno() says which errno
  kUnavailable,         // a peer (the key service) cannot be reached now
  kResourceExhausted,
  kUnimplemented,
  kInternal,            // a broken invariant: a bug, never bad input
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string msg) {
    return Status(StatusCode::kInvalidArgument, std::move(msg));
  }
  static Status NotFound(std::string msg) {
    return Status(StatusCode::kNotFound, std::move(msg));
  }
  static Status AlreadyExists(std::string msg) {
    return Status(StatusCode::kAlreadyExists, std::move(msg));
  }
  static Status PermissionDenied(std::string msg) {
    return Status(StatusCode::kPermissionDenied, std::move(msg));
  }
  static Status FailedPrecondition(std::string msg) {
    return Status(StatusCode::kFailedPrecondition, std::move(msg));
  }
  static Status Corruption(std::string msg) {
    return Status(StatusCode::kCorruption, std::move(msg));
  }
  // `err` is the errno of the failed call; it is kept so that ENOSPC, EDQUOT
  // and friends reach the caller of a filesystem operation unchanged.
  static Status IoError(std::string msg, int err) {
    return Status(StatusCode::kIoError, std::move(msg), err);
  }
  // IoError from the current errno, with strerror appended.
  static Status FromErrno(std::string_view what);
  static Status Unavailable(std::string msg) {
    return Status(StatusCode::kUnavailable, std::move(msg));
  }
  static Status ResourceExhausted(std::string msg) {
    return Status(StatusCode::kResourceExhausted, std::move(msg));
  }
  static Status Unimplemented(std::string msg) {
    return Status(StatusCode::kUnimplemented, std::move(msg));
  }
  static Status Internal(std::string msg) {
    return Status(StatusCode::kInternal, std::move(msg));
  }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // The errno of an kIoError; 0 for every other code.
  int sys_errno() const { return errno_; }

  // "Corruption: chunk 3 failed authentication"
  std::string ToString() const;

  // Returns a copy with "context: " put in front of the message.
  Status WithContext(std::string_view context) const;

  bool operator==(const Status& other) const {
    return code_ == other.code_ && message_ == other.message_ &&
           errno_ == other.errno_;
  }

 private:
  Status(StatusCode code, std::string msg, int err = 0)
      : code_(code), message_(std::move(msg)), errno_(err) {}

  StatusCode code_ = StatusCode::kOk;
  std::string message_;
  int errno_ = 0;
};

// The one mapping from Status to a positive errno value, used by the FUSE
// layer. Corruption maps to EIO: bad ciphertext never reads as data.
int ToErrno(const Status& status);

// Holds either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  // REQUIRES: !status.ok()
  StatusOr(Status status) : status_(std::move(status)) {  // NOLINT
    if (status_.ok()) {
      status_ = Status::Internal("BUG: StatusOr built from an OK Status");
    }
  }
  StatusOr(T value) : value_(std::move(value)) {}  // NOLINT

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }

  // REQUIRES: ok(). Calling these on an error is a bug and aborts.
  T& value() & {
    CheckOk();
    return *value_;
  }
  const T& value() const& {
    CheckOk();
    return *value_;
  }
  T&& value() && {
    CheckOk();
    return std::move(*value_);
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  void CheckOk() const {
    if (!value_.has_value()) std::abort();
  }

  Status status_;
  std::optional<T> value_;
};

}  // namespace envelope

// Returns from the enclosing function if `expr` (a Status) is not OK.
#define ENVELOPE_RETURN_IF_ERROR(expr)                 \
  do {                                                 \
    ::envelope::Status envelope_status_ = (expr);      \
    if (!envelope_status_.ok()) return envelope_status_; \
  } while (0)

#define ENVELOPE_CONCAT_INNER_(a, b) a##b
#define ENVELOPE_CONCAT_(a, b) ENVELOPE_CONCAT_INNER_(a, b)

// `lhs = value of rexpr` or return its Status from the enclosing function.
#define ENVELOPE_ASSIGN_OR_RETURN(lhs, rexpr) \
  ENVELOPE_ASSIGN_OR_RETURN_IMPL_(            \
      ENVELOPE_CONCAT_(envelope_statusor_, __LINE__), lhs, rexpr)
#define ENVELOPE_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                                    \
  if (!tmp.ok()) return tmp.status();                    \
  lhs = std::move(tmp).value()

#endif  // ENVELOPE_CORE_BASE_STATUS_H_
