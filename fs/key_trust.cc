#include "fs/key_trust.h"

#include <cctype>
#include <optional>

#include "kms/blob_label.h"

namespace envelope::fs {

namespace {

bool IsKeyUuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

// The key a key ARN ("arn:...:key/UUID") or a bare key id names, without
// asking; nullopt for an alias, whose target only the service knows.
std::optional<TrustedKey> KeyFromName(const std::string& key) {
  const size_t slash = key.rfind("key/");
  std::string id = key.rfind("arn:", 0) == 0 && slash != std::string::npos ? key.substr(slash + 4)
                                                                            : key;
  if (!IsKeyUuid(id)) return std::nullopt;
  for (char& c : id) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return TrustedKey{key, id};
}

}  // namespace

StatusOr<TrustedKey> ResolveKey(kms::KmsClient* kms, const std::string& key,
                                std::vector<std::string>* warnings) {
  auto r = kms->Call("TrentService.DescribeKey", {{"KeyId", key}});
  if (!r.ok()) {
    // A key policy may allow a user Decrypt and GenerateDataKey but not
    // DescribeKey; a key ARN or id names its key without asking.
    if (r.status().code() == StatusCode::kPermissionDenied) {
      if (auto named = KeyFromName(key)) return *named;
    }
    return r.status().WithContext("resolving key " + key);
  }
  const nlohmann::json m = (*r)["KeyMetadata"];
  if (!m.is_object() || !m.contains("KeyId") || !m["KeyId"].is_string() ||
      !m.contains("Arn") || !m["Arn"].is_string()) {
    return Status::Internal("DescribeKey " + key + ": the key service named no KeyId and Arn");
  }
  TrustedKey t{m["Arn"].get<std::string>(), m["KeyId"].get<std::string>()};
  const std::string creator = kms::ForeignKeyCreator(m, kms->endpoint());
  if (!creator.empty()) {
    warnings->push_back("key " + key + " (" + t.arn + ") was created by " + creator +
                        ", not by you or root: they can decrypt every file key under it and "
                        "destroy it");
  }
  return t;
}

void KeyTrust::Add(TrustedKey key) {
  std::lock_guard lock(mu_);
  for (const TrustedKey& k : keys_) {
    if (k.arn == key.arn) return;
  }
  keys_.push_back(std::move(key));
}

bool KeyTrust::Contains(const std::string& arn) const {
  std::lock_guard lock(mu_);
  for (const TrustedKey& k : keys_) {
    if (k.arn == arn) return true;
  }
  return false;
}

StatusOr<std::string> KeyTrust::KeyIdFor(ByteView blob, const std::string& unlabelled) const {
  auto label = kms::ReadBlobLabel(blob);
  if (!label.ok()) return unlabelled;
  std::lock_guard lock(mu_);
  for (const TrustedKey& k : keys_) {
    if (k.key_id == label->key_id) return k.arn;
  }
  std::string trusted;
  for (const TrustedKey& k : keys_) trusted += (trusted.empty() ? "" : ", ") + k.arn;
  return Status::Corruption("wrapped under key " + label->key_id +
                            ", which this volume does not trust (trusted: " + trusted + ")");
}

std::string KeyTrust::Describe() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const TrustedKey& k : keys_) out += (out.empty() ? "" : ", ") + k.arn;
  return out;
}

}  // namespace envelope::fs
