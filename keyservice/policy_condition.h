// The Condition element of a key policy statement (docs/KEYSERVICE.md,
// "Key policies"), in AWS's grammar:
//
//   "Condition": {"StringEquals": {"kms:EncryptionContext:volume": "v1"},
//                 "ForAnyValue:StringLike": {"kms:EncryptionContextKeys": "app*"}}
//
// Operators: StringEquals, StringNotEquals, StringLike (* and ?), Bool,
// NumericLessThanEquals, and ForAnyValue:/ForAllValues: before the string
// operators for the multi-valued kms:EncryptionContextKeys.
// Keys (names without case, as IAM's): kms:EncryptionContext:KEY,
// kms:EncryptionContextKeys, kms:CallerAccount, kms:RequestAlias,
// kms:GrantIsForAWSResource (always false here),
// kms:ScheduleKeyDeletionPendingWindowInDays, kms:RotationPeriodInDays.
// Anything else is refused by name when the policy is parsed: a condition
// ignored would silently widen an Allow or narrow a Deny.
//
// Every operator must hold (AND), every key within one (AND), any value of
// a key (OR). A key the request lacks matches no value (StringNotEquals:
// holds). A request with several encryption contexts (the batch
// extensions) satisfies an Allow's condition only if every context does,
// and a Deny's if any does.
//
// Thread safety: immutable after Parse.
#ifndef ENVELOPE_KEYSERVICE_POLICY_CONDITION_H_
#define ENVELOPE_KEYSERVICE_POLICY_CONDITION_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/base/status.h"
#include "keyservice/ciphertext_blob.h"

namespace envelope::keyservice {

// What a request says, for conditions.
struct RequestFacts {
  // Every encryption context the request uses with the key; empty for an
  // operation without one.
  std::span<const EncryptionContext> contexts;
  std::string request_alias;  // "alias/NAME" the request named the key by, else ""
  std::string caller_account;
  std::optional<int64_t> pending_window_days;   // ScheduleKeyDeletion
  std::optional<int64_t> rotation_period_days;  // EnableKeyRotation
};

class PolicyCondition {
 public:
  // `condition` is the statement's Condition object. InvalidArgument
  // naming the operator or key that is not supported, or a malformed
  // value.
  static StatusOr<PolicyCondition> Parse(const nlohmann::json& condition);

  bool empty() const { return clauses_.empty(); }
  // Whether the condition holds, for a statement of that effect.
  bool Holds(const RequestFacts& facts, bool deny) const;

 private:
  enum class Op { kStringEquals, kStringNotEquals, kStringLike, kBool, kNumericLessThanEquals };
  enum class Set { kNone, kForAnyValue, kForAllValues };
  enum class Key {
    kEncryptionContext,  // with context_key
    kEncryptionContextKeys,
    kCallerAccount,
    kRequestAlias,
    kGrantIsForAwsResource,
    kPendingWindowInDays,
    kRotationPeriodInDays,
  };
  struct Clause {
    Op op;
    Set set;
    Key key;
    std::string context_key;  // lower-cased
    std::vector<std::string> values;
  };
  // One clause against one context (null: the request has none). nullopt:
  // the context is ambiguous (two keys differing only by case).
  static std::optional<bool> ClauseHolds(const Clause& c, const RequestFacts& facts,
                                         const EncryptionContext* context);

  std::vector<Clause> clauses_;
};

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_POLICY_CONDITION_H_
