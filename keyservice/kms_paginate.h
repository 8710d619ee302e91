// Limit/Marker pagination of list operations (ListKeys, ListAliases,
// ListKeyRotations, DescribeCustomKeyStores). Internal to kms_*.cc.
#ifndef ENVELOPE_KEYSERVICE_KMS_PAGINATE_H_
#define ENVELOPE_KEYSERVICE_KMS_PAGINATE_H_

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/base/base64.h"
#include "keyservice/kms_error.h"
#include "keyservice/kms_request.h"

namespace envelope::keyservice {

// Limit/Marker pagination over items sorted by `key_of`. The marker is the
// base64 of the first key of the next page.
template <typename T, typename KeyOf>
std::optional<KmsError> Paginate(const KmsRequest& req,
                                                            std::vector<T>* items, KeyOf key_of,
                                                            bool* truncated,
                                                            std::string* next_marker) {
  int64_t limit = 100;
  std::string marker;
  if (auto e = req.Int("Limit", false, &limit)) return e;
  if (auto e = req.String("Marker", false, &marker)) return e;
  if (limit < 1 || limit > 1000) {
    return KmsRequest::Invalid("Limit", "Member must have value between 1 and 1000");
  }
  size_t start = 0;
  if (req.Has("Marker")) {
    Bytes decoded;
    if (!Base64Decode(marker, &decoded) || decoded.empty()) {
      return KmsError{"InvalidMarkerException", "the marker was not returned by this service"};
    }
    std::string from(decoded.begin(), decoded.end());
    while (start < items->size() && key_of((*items)[start]) < from) ++start;
  }
  size_t end = std::min(items->size(), start + static_cast<size_t>(limit));
  *truncated = end < items->size();
  if (*truncated) *next_marker = Base64Encode(AsBytes(key_of((*items)[end])));
  *items = std::vector<T>(items->begin() + static_cast<std::ptrdiff_t>(start),
                          items->begin() + static_cast<std::ptrdiff_t>(end));
  return std::nullopt;
}

inline nlohmann::json PageFields(nlohmann::json out, bool truncated, const std::string& next_marker) {
  out["Truncated"] = truncated;
  if (truncated) out["NextMarker"] = next_marker;
  return out;
}

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_KMS_PAGINATE_H_
