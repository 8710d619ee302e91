// One KMS request in flight: the caller, the operation, the parsed body, and
// what its audit record will say. Internal to kms_*.cc.
#ifndef ENVELOPE_KEYSERVICE_KMS_CALL_H_
#define ENVELOPE_KEYSERVICE_KMS_CALL_H_

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "keyservice/kms_request.h"
#include "keyservice/kms_service.h"

namespace envelope::keyservice {

// Decrypt, ReEncrypt and ReEncryptBatch: the largest blob accepted.
inline constexpr size_t kMaxCiphertextInBytes = 6144;

struct KmsService::Call {
  explicit Call(const Principal& p) : who(p), req(in) {}
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;

  const Principal& who;
  std::string op;
  bool extension = false;
  nlohmann::json in = nlohmann::json::object();
  KmsRequest req;  // reads `in`

  // Facts for key-policy conditions (policy_condition.h): the alias the
  // request named its key by (set by Resolve), and the numbers some
  // operations carry.
  std::string request_alias;
  std::optional<int64_t> pending_window_days;   // ScheduleKeyDeletion
  std::optional<int64_t> rotation_period_days;  // EnableKeyRotation

  // Audit facts: never plaintext, never ciphertext.
  std::string key_id;
  uint32_t key_version = 0;
  EncryptionContext context;
  bool has_context = false;
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
  bool audited = false;

  bool sensitive_response = false;
};

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_KMS_CALL_H_
