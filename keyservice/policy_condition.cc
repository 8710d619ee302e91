#include "keyservice/policy_condition.h"

#include <algorithm>
#include <charconv>

#include "core/base/ascii.h"
#include "keyservice/key_policy.h"

namespace envelope::keyservice {

using json = nlohmann::json;

namespace {

Status MalformedCondition(const std::string& msg) {
  return Status::InvalidArgument("MalformedPolicyDocument: " + msg);
}

constexpr char kSupportedConditions[] =
    " (envelope-keyd supports the operators StringEquals, StringNotEquals, StringLike, Bool "
    "and NumericLessThanEquals, ForAnyValue:/ForAllValues: for kms:EncryptionContextKeys, and "
    "the keys kms:EncryptionContext:KEY, kms:EncryptionContextKeys, kms:CallerAccount, "
    "kms:RequestAlias, kms:GrantIsForAWSResource, kms:ScheduleKeyDeletionPendingWindowInDays "
    "and kms:RotationPeriodInDays; docs/KEYSERVICE.md)";

std::optional<int64_t> ParseConditionInt(std::string_view s) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

StatusOr<PolicyCondition> PolicyCondition::Parse(const json& condition) {
  if (!condition.is_object() || condition.empty()) {
    return MalformedCondition("Condition must be a non-empty object of operators");
  }
  PolicyCondition out;
  for (const auto& [op_name, block] : condition.items()) {
    std::string_view name = op_name;
    Set set = Set::kNone;
    for (auto [prefix, s] : {std::pair{std::string_view("ForAnyValue:"), Set::kForAnyValue},
                             std::pair{std::string_view("ForAllValues:"), Set::kForAllValues}}) {
      if (name.substr(0, prefix.size()) == prefix) {
        set = s;
        name.remove_prefix(prefix.size());
      }
    }
    Op op;
    if (name == "StringEquals") op = Op::kStringEquals;
    else if (name == "StringNotEquals") op = Op::kStringNotEquals;
    else if (name == "StringLike") op = Op::kStringLike;
    else if (name == "Bool") op = Op::kBool;
    else if (name == "NumericLessThanEquals") op = Op::kNumericLessThanEquals;
    else return MalformedCondition("condition operator \"" + op_name + "\" is not supported" + kSupportedConditions);
    if (!block.is_object() || block.empty()) {
      return MalformedCondition("condition operator \"" + op_name + "\" must hold an object of keys");
    }
    for (const auto& [key_name, value] : block.items()) {
      Clause c{op, set, Key::kCallerAccount, "", {}};
      const std::string lower = ascii::ToLower(key_name);
      constexpr std::string_view kContextPrefix = "kms:encryptioncontext:";
      if (lower.rfind(kContextPrefix, 0) == 0 && lower.size() > kContextPrefix.size()) {
        c.key = Key::kEncryptionContext;
        c.context_key = lower.substr(kContextPrefix.size());
      } else if (lower == "kms:encryptioncontextkeys") {
        c.key = Key::kEncryptionContextKeys;
      } else if (lower == "kms:calleraccount") {
        c.key = Key::kCallerAccount;
      } else if (lower == "kms:requestalias") {
        c.key = Key::kRequestAlias;
      } else if (lower == "kms:grantisforawsresource") {
        c.key = Key::kGrantIsForAwsResource;
      } else if (lower == "kms:schedulekeydeletionpendingwindowindays") {
        c.key = Key::kPendingWindowInDays;
      } else if (lower == "kms:rotationperiodindays") {
        c.key = Key::kRotationPeriodInDays;
      } else {
        return MalformedCondition("condition key \"" + key_name + "\" is not supported" + kSupportedConditions);
      }
      const bool boolean_key = c.key == Key::kGrantIsForAwsResource;
      const bool numeric_key =
          c.key == Key::kPendingWindowInDays || c.key == Key::kRotationPeriodInDays;
      const bool string_op = op == Op::kStringEquals || op == Op::kStringNotEquals ||
                             op == Op::kStringLike;
      if ((op == Op::kBool) != boolean_key ||
          (op == Op::kNumericLessThanEquals) != numeric_key || (string_op && (boolean_key || numeric_key))) {
        return MalformedCondition("condition operator \"" + op_name + "\" does not apply to \"" +
                         key_name + "\"");
      }
      if (set != Set::kNone && c.key != Key::kEncryptionContextKeys) {
        return MalformedCondition("\"" + op_name + "\": ForAnyValue:/ForAllValues: apply to the "
                         "multi-valued kms:EncryptionContextKeys only");
      }
      const json values = value.is_array() ? value : json::array({value});
      if (values.empty()) return MalformedCondition("condition key \"" + key_name + "\" has no value");
      for (const json& v : values) {
        std::string text;
        if (v.is_string()) text = v.get<std::string>();
        else if (v.is_boolean()) text = v.get<bool>() ? "true" : "false";
        else if (v.is_number_integer()) text = std::to_string(v.get<int64_t>());
        else return MalformedCondition("condition values of \"" + key_name + "\" must be strings");
        if (op == Op::kBool) {
          text = ascii::ToLower(text);
          if (text != "true" && text != "false") {
            return MalformedCondition("Bool condition on \"" + key_name + "\" takes true or false");
          }
        }
        if (op == Op::kNumericLessThanEquals && !ParseConditionInt(text)) {
          return MalformedCondition("NumericLessThanEquals on \"" + key_name + "\" takes integers");
        }
        c.values.push_back(std::move(text));
      }
      out.clauses_.push_back(std::move(c));
    }
  }
  return out;
}

std::optional<bool> PolicyCondition::ClauseHolds(const Clause& c, const RequestFacts& facts,
                                                 const EncryptionContext* context) {
  auto match = [&](std::string_view actual) {
    switch (c.op) {
      case Op::kStringEquals:
      case Op::kBool:
        return std::find(c.values.begin(), c.values.end(), actual) != c.values.end();
      case Op::kStringNotEquals:
        return std::find(c.values.begin(), c.values.end(), actual) == c.values.end();
      case Op::kStringLike:
        return std::any_of(c.values.begin(), c.values.end(),
                           [&](const std::string& p) { return WildcardMatch(p, actual); });
      case Op::kNumericLessThanEquals: {
        auto n = ParseConditionInt(actual);
        return n && std::any_of(c.values.begin(), c.values.end(), [&](const std::string& v) {
                 return *n <= *ParseConditionInt(v);
               });
      }
    }
    return false;
  };
  // A key the request lacks: only a negated operator holds.
  const bool absent = c.op == Op::kStringNotEquals;
  switch (c.key) {
    case Key::kEncryptionContext: {
      if (context == nullptr) return absent;
      const std::string* found = nullptr;
      for (const auto& [k, v] : *context) {
        if (ascii::ToLower(k) != c.context_key) continue;
        if (found != nullptr) return std::nullopt;  // two keys differing only by case
        found = &v;
      }
      return found ? match(*found) : absent;
    }
    case Key::kEncryptionContextKeys: {
      if (context == nullptr) return c.set == Set::kForAllValues;
      if (c.set == Set::kForAllValues) {
        return std::all_of(context->begin(), context->end(),
                           [&](const auto& kv) { return match(kv.first); });
      }
      return std::any_of(context->begin(), context->end(),
                         [&](const auto& kv) { return match(kv.first); });
    }
    case Key::kCallerAccount:
      return match(facts.caller_account);
    case Key::kRequestAlias:
      return facts.request_alias.empty() ? absent : match(facts.request_alias);
    case Key::kGrantIsForAwsResource:
      return match("false");
    case Key::kPendingWindowInDays:
      return facts.pending_window_days ? match(std::to_string(*facts.pending_window_days))
                                       : absent;
    case Key::kRotationPeriodInDays:
      return facts.rotation_period_days ? match(std::to_string(*facts.rotation_period_days))
                                        : absent;
  }
  return false;
}

bool PolicyCondition::Holds(const RequestFacts& facts, bool deny) const {
  auto holds_for = [&](const EncryptionContext* context) {
    for (const Clause& c : clauses_) {
      std::optional<bool> r = ClauseHolds(c, facts, context);
      // Ambiguous: fail closed, which for a Deny means it applies.
      if (!r) return deny;
      if (!*r) return false;
    }
    return true;
  };
  if (facts.contexts.empty()) return holds_for(nullptr);
  if (deny) {
    return std::any_of(facts.contexts.begin(), facts.contexts.end(),
                       [&](const EncryptionContext& c) { return holds_for(&c); });
  }
  return std::all_of(facts.contexts.begin(), facts.contexts.end(),
                     [&](const EncryptionContext& c) { return holds_for(&c); });
}

}  // namespace envelope::keyservice
