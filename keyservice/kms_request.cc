#include "keyservice/kms_request.h"

#include <cctype>

#include "core/base/base64.h"

namespace envelope::keyservice {

namespace {
// AWS names fields in messages in lowerCamelCase ("keyId").
std::string Camel(std::string name) {
  if (!name.empty()) name[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(name[0])));
  return name;
}

KmsError WrongType(const char* name, const char* want) {
  return KmsError{"SerializationException",
                    std::string("field ") + name + " must be " + want};
}

std::optional<KmsError> ParseContext(const nlohmann::json& v, const char* name,
                                       EncryptionContext* out) {
  if (!v.is_object()) return WrongType(name, "an object of strings");
  for (const auto& [k, val] : v.items()) {
    if (!val.is_string()) return WrongType(name, "an object of strings");
    (*out)[k] = val.get<std::string>();
  }
  return std::nullopt;
}
}  // namespace

KmsError KmsRequest::Invalid(const std::string& field, const std::string& constraint) {
  return KmsError{"ValidationException", "1 validation error detected: Value at '" +
                                               Camel(field) +
                                               "' failed to satisfy constraint: " + constraint};
}

KmsError KmsRequest::Missing(const std::string& field) {
  return KmsError{"ValidationException",
                    "1 validation error detected: Value null at '" + Camel(field) +
                        "' failed to satisfy constraint: Member must not be null"};
}

std::optional<KmsError> KmsRequest::String(const char* name, bool required,
                                             std::string* out) const {
  if (!Has(name)) {
    if (required) return Missing(name);
    return std::nullopt;
  }
  if (!in_[name].is_string()) return WrongType(name, "a string");
  *out = in_[name].get<std::string>();
  return std::nullopt;
}

std::optional<KmsError> KmsRequest::Int(const char* name, bool required, int64_t* out) const {
  if (!Has(name)) {
    if (required) return Missing(name);
    return std::nullopt;
  }
  if (!in_[name].is_number_integer()) return WrongType(name, "an integer");
  *out = in_[name].get<int64_t>();
  return std::nullopt;
}

std::optional<KmsError> KmsRequest::Bool(const char* name, bool* out) const {
  *out = false;
  if (!Has(name)) return std::nullopt;
  if (!in_[name].is_boolean()) return WrongType(name, "a boolean");
  *out = in_[name].get<bool>();
  return std::nullopt;
}

std::optional<KmsError> KmsRequest::Blob(const char* name, bool required, Bytes* out) const {
  std::string text;
  if (auto e = String(name, required, &text)) return e;
  if (!Has(name)) return std::nullopt;
  if (!Base64Decode(text, out)) {
    return KmsError{"SerializationException", std::string("field ") + name +
                                                    " is not valid base64"};
  }
  return std::nullopt;
}

std::optional<KmsError> KmsRequest::Context(const char* name, EncryptionContext* out) const {
  out->clear();
  if (!Has(name)) return std::nullopt;
  return ParseContext(in_[name], name, out);
}

std::optional<KmsError> KmsRequest::ContextList(const char* name, size_t max,
                                                  std::vector<EncryptionContext>* out) const {
  out->clear();
  if (!Has(name)) return Missing(name);
  const auto& v = in_[name];
  if (!v.is_array()) return WrongType(name, "an array of objects of strings");
  if (v.empty() || v.size() > max) {
    return Invalid(name, "Member must have length between 1 and " + std::to_string(max));
  }
  for (const auto& item : v) {
    EncryptionContext context;
    if (auto e = ParseContext(item, name, &context)) return e;
    out->push_back(std::move(context));
  }
  return std::nullopt;
}

std::optional<KmsError> KmsRequest::StringList(const char* name, bool required,
                                                 std::vector<std::string>* out) const {
  if (!Has(name)) {
    if (required) return Missing(name);
    return std::nullopt;
  }
  const auto& v = in_[name];
  if (!v.is_array()) return WrongType(name, "an array of strings");
  for (const auto& e : v) {
    if (!e.is_string()) return WrongType(name, "an array of strings");
    out->push_back(e.get<std::string>());
  }
  return std::nullopt;
}

std::optional<KmsError> KmsRequest::Tags(
    const char* name, bool required, std::vector<std::pair<std::string, std::string>>* out) const {
  if (!Has(name)) {
    if (required) return Missing(name);
    return std::nullopt;
  }
  const auto& v = in_[name];
  if (!v.is_array()) return WrongType(name, "an array of tags");
  for (const auto& t : v) {
    if (!t.is_object() || !t.contains("TagKey") || !t["TagKey"].is_string() ||
        !t.contains("TagValue") || !t["TagValue"].is_string()) {
      return WrongType(name, "an array of {TagKey, TagValue} objects");
    }
    std::string key = t["TagKey"].get<std::string>();
    std::string value = t["TagValue"].get<std::string>();
    if (key.empty() || key.size() > 128) return Invalid("TagKey", "Member must have length between 1 and 128");
    if (value.size() > 256) return Invalid("TagValue", "Member must have length less than or equal to 256");
    out->emplace_back(std::move(key), std::move(value));
  }
  return std::nullopt;
}

}  // namespace envelope::keyservice
