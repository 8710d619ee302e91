// Typed access to the fields of a KMS JSON request, with AWS's error types:
// a missing required field is a ValidationException, a field of the wrong
// JSON type or a blob that is not valid base64 a SerializationException.
#ifndef ENVELOPE_KEYSERVICE_KMS_REQUEST_H_
#define ENVELOPE_KEYSERVICE_KMS_REQUEST_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/base/coding.h"
#include "keyservice/ciphertext_blob.h"

namespace envelope::keyservice {

struct FieldError {
  std::string type;  // "ValidationException" or "SerializationException"
  std::string message;
};

class KmsRequest {
 public:
  explicit KmsRequest(const nlohmann::json& in) : in_(in) {}

  bool Has(const char* name) const { return in_.contains(name) && !in_[name].is_null(); }

  std::optional<FieldError> String(const char* name, bool required, std::string* out) const;
  std::optional<FieldError> Int(const char* name, bool required, int64_t* out) const;
  std::optional<FieldError> Bool(const char* name, bool* out) const;  // optional, default false
  std::optional<FieldError> Blob(const char* name, bool required, Bytes* out) const;
  std::optional<FieldError> Context(const char* name, EncryptionContext* out) const;
  // [{...}, {...}]: 1 to `max` encryption contexts.
  std::optional<FieldError> ContextList(const char* name, size_t max,
                                        std::vector<EncryptionContext>* out) const;
  std::optional<FieldError> StringList(const char* name, bool required,
                                       std::vector<std::string>* out) const;
  // [{"TagKey": k, "TagValue": v}, ...]
  std::optional<FieldError> Tags(const char* name, bool required,
                                 std::vector<std::pair<std::string, std::string>>* out) const;

  // AWS-style "1 validation error detected: ..." messages.
  static FieldError Invalid(const std::string& field, const std::string& constraint);
  static FieldError Missing(const std::string& field);

 private:
  const nlohmann::json& in_;
};

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_KMS_REQUEST_H_
