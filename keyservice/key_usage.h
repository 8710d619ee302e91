// GetKeyLastUsage's memory: the last successful cryptographic operation of
// each key (docs/KEYSERVICE.md, "GetKeyLastUsage"). Noted in memory on the
// hot path (one mutex, no LMDB transaction); written to the store's meta
// ("last_use:KEY_ID") by the scheduled work and at shutdown, so a crash
// loses at most one scheduler interval of it. TrackingStartDate is when
// the store first tracked (meta "last_use_tracking_start").
//
// Thread safety: all methods are thread-safe.
#ifndef ENVELOPE_KEYSERVICE_KEY_USAGE_H_
#define ENVELOPE_KEYSERVICE_KEY_USAGE_H_

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/base/status.h"

namespace envelope::keyservice {

struct LastUse {
  std::string operation;  // "Decrypt", "Sign", ...
  int64_t timestamp = 0;  // epoch seconds
};

// The meta entries of the store.
inline constexpr char kLastUseMetaPrefix[] = "last_use:";
inline constexpr char kLastUseTrackingStartMeta[] = "last_use_tracking_start";

// The AWS operation name GetKeyLastUsage reports for a successful request
// of `operation` (an extension maps to the operation it stands for), or
// "" if it is not a cryptographic use of a key.
std::string_view UsageOperationOf(std::string_view operation, bool extension);

std::string LastUseToJson(const LastUse& use);
StatusOr<LastUse> LastUseFromJson(std::string_view text);

class KeyUsageTracker {
 public:
  void Note(const std::string& key_id, std::string_view operation, int64_t now);
  std::optional<LastUse> Find(const std::string& key_id) const;
  // Sets what the store said, at start (not marked for writing).
  void Load(const std::string& key_id, LastUse use);
  // The entries noted since the last call, to be written; they count as
  // written from now on (a failed write gives them back with Restore).
  std::vector<std::pair<std::string, LastUse>> TakeDirty();
  void Restore(const std::vector<std::pair<std::string, LastUse>>& entries);

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, LastUse> last_;  // guarded by mu_
  std::unordered_set<std::string> dirty_;          // guarded by mu_
};

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_KEY_USAGE_H_
