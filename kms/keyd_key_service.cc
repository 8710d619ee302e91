#include "kms/keyd_key_service.h"

#include <algorithm>

#include "kms/blob_label.h"

namespace envelope::kms {

using json = nlohmann::json;

KeydKeyService::KeydKeyService(std::unique_ptr<KmsClient> client)
    : StandardKms(std::move(client)) {}

StatusOr<KeyInfo> KeydKeyService::DescribeKey(const std::string& key) {
  ENVELOPE_ASSIGN_OR_RETURN(json m, DescribeKeyMetadata(key));
  KeyInfo info = StandardKeyInfo(m);
  info.foreign_creator = ForeignKeyCreator(m, client().endpoint());
  return info;
}

StatusOr<CurrentVersion> KeydKeyService::DescribeCurrentVersion(const std::string& key) {
  ENVELOPE_ASSIGN_OR_RETURN(json m, DescribeKeyMetadata(key));
  auto number = m.find("CurrentKeyVersion");
  if (number == m.end() || !number->is_number_unsigned()) {
    return CurrentVersionByDate(m);  // a keyd with --standard-only
  }
  CurrentVersion v;
  v.number = number->get<uint32_t>();
  v.marker = "version:" + std::to_string(*v.number);
  auto created = m.find("CreationDate");
  if (created != m.end() && created->is_number()) v.since = created->get<double>();
  if (*v.number > 1) {
    // The rotation that made the current version says when it appeared.
    auto rotations = ListRotations(m["KeyId"].get<std::string>());
    if (!rotations.ok() && rotations.status().code() == StatusCode::kUnavailable) {
      return rotations.status();
    }
    if (rotations.ok()) {
      for (const json& r : *rotations) {
        if (r.value("KeyVersion", 0u) == *v.number) v.since = r.value("RotationDate", v.since);
      }
    }
  }
  return v;
}

StatusOr<std::vector<DataKey>> KeydKeyService::GenerateDataKeys(
    const std::string& key, const std::vector<EncryptionContextMap>& contexts) {
  if (contexts.size() <= 1 || !has_batches_.load(std::memory_order_relaxed)) {
    return StandardKms::GenerateDataKeys(key, contexts);
  }
  std::vector<DataKey> keys;
  keys.reserve(contexts.size());
  for (size_t start = 0; start < contexts.size(); start += kMaxDataKeysPerRequest) {
    const size_t end = std::min(contexts.size(), start + kMaxDataKeysPerRequest);
    std::vector<EncryptionContextMap> part(contexts.begin() + start, contexts.begin() + end);
    auto batch = client().GenerateDataKeys(key, part);
    if (!batch.ok()) {
      if (KmsErrorType(batch.status()) == "UnknownOperationException") {
        has_batches_ = false;
        std::vector<EncryptionContextMap> rest(contexts.begin() + start, contexts.end());
        auto more = StandardKms::GenerateDataKeys(key, rest);
        if (!more.ok()) {
          if (keys.empty()) return more.status();
          return keys;
        }
        for (DataKey& k : *more) keys.push_back(std::move(k));
        return keys;
      }
      if (keys.empty()) return batch.status();
      return keys;
    }
    for (DataKey& k : *batch) keys.push_back(std::move(k));
  }
  return keys;
}

std::vector<StatusOr<Bytes>> KeydKeyService::ReEncryptMany(std::span<const ReEncryptItem> items,
                                                           const std::string& destination_key) {
  if (items.size() <= 1 || !has_rewrap_batches_.load(std::memory_order_relaxed)) {
    return StandardKms::ReEncryptMany(items, destination_key);
  }
  std::vector<StatusOr<Bytes>> out;
  out.reserve(items.size());
  const size_t body = ReEncryptBatchBodySize(destination_key);
  for (size_t start = 0; start < items.size();) {
    // As many items as one request carries: a count and a body limit.
    size_t end = start, bytes = body;
    while (end < items.size() && end - start < kMaxReEncryptsPerRequest) {
      const size_t more = ReEncryptBatchItemSize(items[end]);
      if (end > start && bytes + more > kMaxKeydRequestBodyBytes) break;
      bytes += more;
      ++end;
    }
    auto batch = client().ReEncryptBatch(items.subspan(start, end - start), destination_key);
    if (!batch.ok()) {
      if (KmsErrorType(batch.status()) == "UnknownOperationException") {
        has_rewrap_batches_ = false;
        for (auto& r : StandardKms::ReEncryptMany(items.subspan(start), destination_key)) {
          out.push_back(std::move(r));
        }
        return out;
      }
      // The request failed as a whole (the service, the destination key):
      // so does every item not yet done.
      while (out.size() < items.size()) out.push_back(batch.status());
      return out;
    }
    for (auto& r : *batch) out.push_back(std::move(r));
    start = end;
  }
  return out;
}

std::optional<BlobVersion> KeydKeyService::VersionOf(ByteView blob) const {
  auto label = ReadBlobLabel(blob);
  if (!label.ok()) return std::nullopt;
  return BlobVersion{label->key_id, label->key_version, label->plaintext_size};
}

}  // namespace envelope::kms
