#include "keyservice/key_usage.h"

#include <nlohmann/json.hpp>

#include "keyservice/json_output.h"

namespace envelope::keyservice {

std::string_view UsageOperationOf(std::string_view op, bool extension) {
  if (extension) {
    if (op == "GenerateDataKeys") return "GenerateDataKey";
    if (op == "ReEncryptBatch") return "ReEncrypt";
    return "";
  }
  static constexpr std::string_view kTracked[] = {
      "Decrypt", "DeriveSharedSecret", "Encrypt", "GenerateDataKey", "GenerateDataKeyPair",
      "GenerateDataKeyPairWithoutPlaintext", "GenerateDataKeyWithoutPlaintext", "GenerateMac",
      "ReEncrypt", "Sign", "Verify", "VerifyMac"};
  for (std::string_view t : kTracked) {
    if (t == op) return t;
  }
  return "";
}

std::string LastUseToJson(const LastUse& use) {
  return DumpJson(nlohmann::json{{"operation", use.operation}, {"timestamp", use.timestamp}});
}

StatusOr<LastUse> LastUseFromJson(std::string_view text) {
  auto doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("operation") ||
      !doc["operation"].is_string() || !doc.contains("timestamp") ||
      !doc["timestamp"].is_number_integer()) {
    return Status::Corruption("a stored last use does not parse");
  }
  return LastUse{doc["operation"].get<std::string>(), doc["timestamp"].get<int64_t>()};
}

void KeyUsageTracker::Note(const std::string& key_id, std::string_view operation, int64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  LastUse& use = last_[key_id];
  use.operation = std::string(operation);
  use.timestamp = now;
  dirty_.insert(key_id);
}

std::optional<LastUse> KeyUsageTracker::Find(const std::string& key_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = last_.find(key_id);
  if (it == last_.end()) return std::nullopt;
  return it->second;
}

void KeyUsageTracker::Load(const std::string& key_id, LastUse use) {
  std::lock_guard<std::mutex> lock(mu_);
  last_.emplace(key_id, std::move(use));
}

std::vector<std::pair<std::string, LastUse>> KeyUsageTracker::TakeDirty() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<std::string, LastUse>> out;
  for (const std::string& id : dirty_) out.emplace_back(id, last_.at(id));
  dirty_.clear();
  return out;
}

void KeyUsageTracker::Restore(const std::vector<std::pair<std::string, LastUse>>& entries) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& e : entries) dirty_.insert(e.first);
}

}  // namespace envelope::keyservice
