// The persistent metadata of one KMS key, stored as JSON in the LMDB "keys"
// database (docs/KEYSERVICE.md, "Store"). Key material is stored apart from
// it, sealed under the root key, one entry per version.
#ifndef ENVELOPE_KEYSERVICE_KEY_RECORD_H_
#define ENVELOPE_KEYSERVICE_KEY_RECORD_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/base/status.h"

namespace envelope::keyservice {

inline constexpr char kStateEnabled[] = "Enabled";
inline constexpr char kStateDisabled[] = "Disabled";
inline constexpr char kStatePendingDeletion[] = "PendingDeletion";

struct KeyVersionInfo {
  uint32_t number = 0;  // from 1
  int64_t created = 0;  // epoch seconds
  std::string rotation_type;  // "INITIAL", "AUTOMATIC" or "ON_DEMAND"
};

struct KeyRecord {
  std::string key_id;  // lower-case UUID
  std::string description;
  // Who made the key (Principal::PrimaryName, e.g. "user:alice"); "" for a
  // key stored before this field existed. Shown by DescribeKey as the
  // extension field "Creator" so that a client can warn when an alias or a
  // file leads it to a key another principal controls.
  std::string creator;
  std::string key_state = kStateEnabled;
  int64_t creation_date = 0;
  int64_t deletion_date = 0;  // set while PendingDeletion
  int pending_window_days = 0;
  // Set by DisableKey, so that CancelKeyDeletion can restore Disabled.
  bool enabled_flag = true;
  bool rotation_enabled = false;
  int rotation_period_days = 365;
  int64_t next_rotation_date = 0;
  std::string policy;  // JSON text, validated by KeyPolicy::Parse
  std::vector<std::pair<std::string, std::string>> tags;  // sorted by key
  std::vector<KeyVersionInfo> versions;  // every version ever made, ascending
  uint32_t current_version = 0;          // newest; the one that encrypts
  uint32_t min_version = 1;  // versions below were retired: material destroyed

  std::string ToJson() const;
  static StatusOr<KeyRecord> FromJson(std::string_view text);
};

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_KEY_RECORD_H_
