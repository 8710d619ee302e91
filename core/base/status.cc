#include "core/base/status.h"

#include <cerrno>
#include <cstring>

namespace envelope {

std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kInvalidArgument: return "InvalidArgument";
    case StatusCode::kNotFound: return "NotFound";
    case StatusCode::kAlreadyExists: return "AlreadyExists";
    case StatusCode::kPermissionDenied: return "PermissionDenied";
    case StatusCode::kFailedPrecondition: return "FailedPrecondition";
    case StatusCode::kCorruption: return "Corruption";
    case StatusCode::kIoError: return "IoError";
    case StatusCode::kUnavailable: return "Unavailable";
    case StatusCode::kResourceExhausted: return "ResourceExhausted";
    case StatusCode::kUnimplemented: return "Unimplemented";
    case StatusCode::kInternal: return "Internal";
  }
  return "Unknown";
}

Status Status::FromErrno(std::string_view what) {
  int err = errno;
  std::string msg(what);
  msg += ": ";
  msg += std::strerror(err);
  return IoError(std::move(msg), err);
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string out(StatusCodeName(code_));
  out += ": ";
  out += message_;
  return out;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  std::string msg(context);
  msg += ": ";
  msg += message_;
  return Status(code_, std::move(msg), errno_);
}

int ToErrno(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk: return 0;
    case StatusCode::kInvalidArgument: return EINVAL;
    case StatusCode::kNotFound: return ENOENT;
    case StatusCode::kAlreadyExists: return EEXIST;
    case StatusCode::kPermissionDenied: return EACCES;
    case StatusCode::kFailedPrecondition: return EIO;
    case StatusCode::kCorruption: return EIO;
    case StatusCode::kIoError:
      return status.sys_errno() > 0 ? status.sys_errno() : EIO;
    case StatusCode::kUnavailable: return EIO;
    case StatusCode::kResourceExhausted: return ENOMEM;
    case StatusCode::kUnimplemented: return ENOSYS;
    case StatusCode::kInternal: return EIO;
  }
  return EIO;
}

}  // namespace envelope
