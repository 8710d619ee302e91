#include "fs/key_trust.h"

#include <cctype>
#include <optional>

#include "core/base/uuid.h"

namespace envelope::fs {

namespace {

// The key a key ARN ("arn:...:key/UUID") or a bare key id names, without
// asking; nullopt for an alias, whose target only the service knows.
std::optional<TrustedKey> KeyFromName(const std::string& key) {
  const size_t slash = key.rfind("key/");
  std::string id = key.rfind("arn:", 0) == 0 && slash != std::string::npos ? key.substr(slash + 4)
                                                                            : key;
  if (!IsUuid(id)) return std::nullopt;
  for (char& c : id) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return TrustedKey{key, id};
}

}  // namespace

StatusOr<TrustedKey> ResolveKey(kms::KeyService* kms, const std::string& key,
                                std::vector<std::string>* warnings) {
  auto info = kms->DescribeKey(key);
  if (!info.ok()) {
    // A key policy may allow a user Decrypt and GenerateDataKey but not
    // DescribeKey; a key ARN or id names its key without asking.
    if (info.status().code() == StatusCode::kPermissionDenied) {
      if (auto named = KeyFromName(key)) return *named;
    }
    return info.status().WithContext("resolving key " + key);
  }
  TrustedKey t{info->arn, info->key_id};
  for (char& c : t.key_id) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!info->foreign_creator.empty()) {
    warnings->push_back("key " + key + " (" + t.arn + ") was created by " + info->foreign_creator +
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

StatusOr<std::vector<std::string>> KeyTrust::Candidates(
    const std::optional<kms::BlobVersion>& label, const std::string& current) const {
  std::lock_guard lock(mu_);
  if (!label) {
    std::vector<std::string> out = {current};
    for (const TrustedKey& k : keys_) {
      if (k.arn != current) out.push_back(k.arn);
    }
    return out;
  }
  for (const TrustedKey& k : keys_) {
    if (k.key_id == label->key_id) return std::vector<std::string>{k.arn};
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
