#include "kms/kms_errors.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "kms/operations.h"

namespace envelope::kms {

using json = nlohmann::json;

namespace {

StatusCode CodeForType(std::string_view type, int http_status) {
  if (type == "NotFoundException") return StatusCode::kNotFound;
  if (type == "AccessDeniedException") return StatusCode::kPermissionDenied;
  if (type == "AlreadyExistsException") return StatusCode::kAlreadyExists;
  if (type == "InvalidCiphertextException" ||
      type == "IncorrectKeyException") {
    return StatusCode::kCorruption;
  }
  if (type == "DisabledException" || type == "KMSInvalidStateException") {
    return StatusCode::kFailedPrecondition;
  }
  if (type == "ThrottlingException" || type == "KMSInternalException" ||
      http_status >= 500) {
    return StatusCode::kUnavailable;
  }
  return StatusCode::kInvalidArgument;
}

Status MakeStatus(StatusCode code, std::string message) {
  switch (code) {
    case StatusCode::kNotFound: return Status::NotFound(std::move(message));
    case StatusCode::kPermissionDenied:
      return Status::PermissionDenied(std::move(message));
    case StatusCode::kAlreadyExists:
      return Status::AlreadyExists(std::move(message));
    case StatusCode::kCorruption: return Status::Corruption(std::move(message));
    case StatusCode::kFailedPrecondition:
      return Status::FailedPrecondition(std::move(message));
    case StatusCode::kUnavailable:
      return Status::Unavailable(std::move(message));
    default: return Status::InvalidArgument(std::move(message));
  }
}

bool IsIdentifierChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9');
}

}  // namespace

Status StatusFromKmsError(const std::string& type, const std::string& message,
                          int http_status) {
  return MakeStatus(CodeForType(type, http_status),
                    message.empty() ? type : type + ": " + message);
}

Status StatusFromKmsResponse(int http_status, std::string_view body,
                             std::string_view endpoint_name) {
  if (http_status >= 200 && http_status < 300) return Status::Ok();
  json parsed = json::parse(body, nullptr, false);
  // The first of `names` that is a string member of the answer, or "".
  auto member = [&](std::initializer_list<const char*> names) -> std::string {
    if (!parsed.is_object()) return "";
    for (const char* name : names) {
      auto it = parsed.find(name);
      if (it != parsed.end() && it->is_string()) return it->get<std::string>();
    }
    return "";
  };
  std::string type = member({"__type"}), message;
  if (!type.empty()) {
    // AWS may qualify the type: "com.amazon.coral.service#ThrottlingException".
    size_t hash = type.rfind('#');
    if (hash != std::string::npos) type.erase(0, hash + 1);
    message = member({"message", "Message"});  // both spellings occur in AWS services
  }
  if (type.empty() || !std::all_of(type.begin(), type.end(),
                                   IsIdentifierChar)) {
    std::string what = "the key service at " + std::string(endpoint_name) +
                       " answered HTTP " + std::to_string(http_status);
    if (http_status >= 500) return Status::Unavailable(std::move(what));
    return Status::InvalidArgument(std::move(what) +
                                   " without an error type");
  }
  return StatusFromKmsError(type, message, http_status);
}

std::string KmsErrorType(const Status& status) {
  if (status.ok()) return "";
  const std::string& m = status.message();
  std::string_view type = std::string_view(m).substr(0, m.find(':'));
  if (type.empty() || !std::all_of(type.begin(), type.end(),
                                   IsIdentifierChar)) {
    return "";
  }
  constexpr std::string_view kSuffix = "Exception";
  if (type.size() <= kSuffix.size() ||
      type.substr(type.size() - kSuffix.size()) != kSuffix) {
    return "";
  }
  return std::string(type);
}

bool IsIdempotentOperation(std::string_view target) {
  // Unknown is not idempotent: retrying something unknown is not safe.
  const Operation* op = FindOperation(target);
  return op != nullptr && op->idempotent;
}

bool ShouldRetry(std::string_view target, const Status& status,
                 bool request_written) {
  if (status.code() != StatusCode::kUnavailable) return false;
  return !request_written || IsIdempotentOperation(target);
}

}  // namespace envelope::kms
