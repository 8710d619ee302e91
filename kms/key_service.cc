#include "kms/key_service.h"

namespace envelope::kms {

StatusOr<DataKey> KeyService::GenerateDataKey(const std::string& key,
                                              const EncryptionContextMap& context) {
  ENVELOPE_ASSIGN_OR_RETURN(std::vector<DataKey> keys, GenerateDataKeys(key, {context}));
  if (keys.size() != 1) return Status::Internal("the key service made no data key");
  return std::move(keys.front());
}

std::optional<BlobVersion> KeyService::VersionOf(ByteView) const { return std::nullopt; }

}  // namespace envelope::kms
