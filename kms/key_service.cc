#include "kms/key_service.h"

namespace envelope::kms {

StatusOr<DataKey> KeyService::GenerateDataKey(const std::string& key,
                                              const EncryptionContextMap& context) {
  ENVELOPE_ASSIGN_OR_RETURN(std::vector<DataKey> keys, GenerateDataKeys(key, {context}));
  if (keys.size() != 1) return Status::Internal("the key service made no data key");
  return std::move(keys.front());
}

std::vector<StatusOr<Bytes>> KeyService::ReEncryptMany(std::span<const ReEncryptItem> items,
                                                       const std::string& destination_key) {
  std::vector<StatusOr<Bytes>> out;
  out.reserve(items.size());
  for (const ReEncryptItem& item : items) {
    out.push_back(ReEncrypt(item.blob, item.source_key_id, item.source_context, destination_key,
                            item.destination_context));
  }
  return out;
}

std::optional<BlobVersion> KeyService::VersionOf(ByteView) const { return std::nullopt; }

}  // namespace envelope::kms
