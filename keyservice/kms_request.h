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
#include "keyservice/kms_error.h"

namespace envelope::keyservice {

class KmsRequest {
 public:
  explicit KmsRequest(const nlohmann::json& in) : in_(in) {}

  bool Has(const char* name) const { return in_.contains(name) && !in_[name].is_null(); }

  std::optional<KmsError> String(const char* name, bool required, std::string* out) const;
  std::optional<KmsError> Int(const char* name, bool required, int64_t* out) const;
  std::optional<KmsError> Bool(const char* name, bool* out) const;  // optional, default false
  std::optional<KmsError> Blob(const char* name, bool required, Bytes* out) const;
  std::optional<KmsError> Context(const char* name, EncryptionContext* out) const;
  // [{...}, {...}]: 1 to `max` encryption contexts.
  std::optional<KmsError> ContextList(const char* name, size_t max,
                                        std::vector<EncryptionContext>* out) const;
  std::optional<KmsError> StringList(const char* name, bool required,
                                       std::vector<std::string>* out) const;
  // [{"TagKey": k, "TagValue": v}, ...]
  std::optional<KmsError> Tags(const char* name, bool required,
                                 std::vector<std::pair<std::string, std::string>>* out) const;

  // AWS-style "1 validation error detected: ..." messages.
  static KmsError Invalid(const std::string& field, const std::string& constraint);
  static KmsError Missing(const std::string& field);

 private:
  const nlohmann::json& in_;
};

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_KMS_REQUEST_H_
