// Key policies in the AWS policy grammar, evaluated for local principals
// (docs/KEYSERVICE.md, "Key policies").
//
//   {"Version": "2012-10-17",
//    "Statement": [{"Sid": "...", "Effect": "Allow" | "Deny",
//                   "Principal": "*" | {"Local" | "AWS": NAME | [NAME...]},
//                   "Action": ACTION | [ACTION...],
//                   "Resource": ARN | [ARN...],
//                   "Condition": {...}}]}   (policy_condition.h)
//
// NAME is "*", "user:NAME", "uid:N", "group:NAME", "gid:N" (Unix socket
// peers), "key:NAME" (TCP access keys, NAME from the access-keys file) or
// "tls:SUBJECT" (TLS client certificates, SUBJECT in RFC 2253 form:
// "tls:CN=host-a"; principal.h).
// ACTION is "kms:Operation" with * and ? wildcards, case-insensitive, as in
// AWS ("kms:GenerateDataKey*"). An explicit Deny wins over any Allow; no
// Allow means denied. A statement with a Condition applies only when it
// holds. Elements we do not implement (NotAction, NotPrincipal,
// NotResource, and conditions policy_condition.h does not know) are
// rejected rather than ignored, because ignoring them would silently widen
// a statement.
//
// Thread safety: immutable after Parse; share freely.
#ifndef ENVELOPE_KEYSERVICE_KEY_POLICY_H_
#define ENVELOPE_KEYSERVICE_KEY_POLICY_H_

#include <string>
#include <string_view>
#include <vector>

#include "core/base/status.h"
#include "keyservice/policy_condition.h"
#include "keyservice/principal.h"

namespace envelope::keyservice {

class KeyPolicy {
 public:
  enum class Decision { kAllow, kExplicitDeny, kImplicitDeny };

  // InvalidArgument, with a message naming the offending element, for
  // anything outside the grammar above (MalformedPolicyDocumentException).
  static StatusOr<KeyPolicy> Parse(std::string_view json);

  // The policy CreateKey gives a key when none is supplied: kms:* for the
  // creator and for root, nobody else.
  static std::string DefaultFor(const Principal& creator);

  // `facts`: what the request says, for statements with a Condition.
  Decision Evaluate(const Principal& who, std::string_view action, std::string_view resource_arn,
                    const RequestFacts& facts = {}) const;
  bool Allows(const Principal& who, std::string_view action, std::string_view resource_arn,
              const RequestFacts& facts = {}) const {
    return Evaluate(who, action, resource_arn, facts) == Decision::kAllow;
  }

 private:
  struct Statement {
    bool allow = false;
    bool any_principal = false;
    std::vector<std::string> principals;
    std::vector<std::string> actions;    // lower-cased patterns
    std::vector<std::string> resources;  // patterns
    PolicyCondition condition;           // empty: none
  };
  std::vector<Statement> statements_;
};

// Glob match with '*' (any run) and '?' (one character).
bool WildcardMatch(std::string_view pattern, std::string_view text);

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_KEY_POLICY_H_
