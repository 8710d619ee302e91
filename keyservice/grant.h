// Grants (docs/KEYSERVICE.md, "Grants"): a permission on one key, given to
// one principal for a list of operations, optionally only for requests whose
// encryption context matches a constraint. Kept in the key's record, so a
// request sees the key and its grants in one snapshot and a revoked grant
// stops working with the commit that revokes it.
//
// This file holds the grant itself: its record, its validation, whether it
// allows a request, the strictness rule for grants made through grants, and
// grant tokens. The operations are kms_grant_ops.cc.
//
// Thread safety: plain values; const methods are safe to share.
#ifndef ENVELOPE_KEYSERVICE_GRANT_H_
#define ENVELOPE_KEYSERVICE_GRANT_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/base/status.h"
#include "keyservice/ciphertext_blob.h"

namespace envelope::keyservice {

// AWS's limits, per key: constraint pairs, a constraint value's length,
// operations named, grants for one grantee (AWS: 500). Grants per key in
// all: AWS allows 50,000; here the grants live in the key's record, which
// every change of the key rewrites, so the bound is lower (documented).
inline constexpr size_t kMaxGrantConstraintPairs = 8;
inline constexpr size_t kMaxGrantConstraintValue = 384;
inline constexpr size_t kMaxGrantsPerGrantee = 500;
inline constexpr size_t kMaxGrantsPerKey = 2000;

struct Grant {
  std::string grant_id;  // 64 lower-case hex digits
  std::string name;      // optional; the idempotency name of CreateGrant
  int64_t creation_date = 0;
  std::string grantee;            // a principal name (ValidGrantPrincipal)
  std::string retiring;           // optional principal name
  std::string issuer;             // PrimaryName() of the principal that made it
  std::vector<std::string> operations;  // sorted, unique, from kGrantOperations
  // Constraints. Keys compare case-insensitively, values exactly (AWS).
  std::optional<EncryptionContext> context_equals;
  std::optional<EncryptionContext> context_subset;
  // Extension: epoch seconds after which the grant allows nothing (and the
  // daemon's scheduled work removes it); 0 for none. Used by `envelopefs
  // share --until`.
  int64_t expiry = 0;

  bool has_constraints() const { return context_equals || context_subset; }
  bool expired(int64_t now) const { return expiry != 0 && now >= expiry; }

  // Whether the grant lets a caller answering to `names` (Principal::
  // PolicyNames) run `operation` (a grant operation name: "Decrypt",
  // "ReEncryptFrom") at `now`. `contexts`: every encryption context the
  // request uses with this key (one for Encrypt, many for the batch
  // extensions); the constraints apply to operations that take one and
  // must hold for each.
  bool Allows(std::span<const std::string> names, std::string_view operation,
              std::span<const EncryptionContext> contexts, int64_t now) const;

  // Whether a grant `child` made through this grant's CreateGrant
  // permission stays within it: its operations a subset of ours, its
  // constraints equally strict or stricter, its expiry no later.
  bool Covers(const Grant& child) const;

  // The same grant for CreateGrant's Name idempotency: every parameter but
  // the id, date and issuer equal.
  bool SameRequest(const Grant& other) const;
};

// AWS's grant operations (GrantOperationList in service-2.json), sorted.
std::span<const std::string_view> GrantOperations();
// Those whose requests carry an encryption context: the only ones a grant
// with constraints may name, besides DescribeKey and RetireGrant (to which
// the constraints do not apply), and the only ones they constrain.
bool GrantOperationTakesContext(std::string_view operation);

// Checks Operations and Constraints as CreateGrant does; InvalidArgument
// with AWS's wording otherwise. Sorts and de-duplicates `g->operations`.
Status ValidateGrant(Grant* g);

// A grantee or retiring principal: a principal name a key policy could
// name ("user:NAME", "uid:N", "group:NAME", "gid:N", "key:NAME",
// "tls:SUBJECT"), never "*".
bool ValidGrantPrincipal(std::string_view name);

// The grant operation a policy action stands for: "kms:Decrypt" ->
// "Decrypt".
std::string_view GrantOperationOf(std::string_view action);

// A new random grant id.
StatusOr<std::string> NewGrantId();
bool ValidGrantId(std::string_view id);

// Grant tokens: "egt1." + base64url(key id ":" grant id ":" 16 random hex).
// They name a grant; holding one authorises nothing by itself (grants take
// effect at once here, which is what AWS's tokens stand in for).
StatusOr<std::string> MakeGrantToken(const std::string& key_id, const std::string& grant_id);
struct GrantTokenParts {
  std::string key_id;
  std::string grant_id;
};
// InvalidArgument unless `token` is one MakeGrantToken could have made.
StatusOr<GrantTokenParts> ParseGrantToken(std::string_view token);

// The stored form, one element of a key record's "grants".
nlohmann::json GrantToJson(const Grant& g);
StatusOr<Grant> GrantFromJson(const nlohmann::json& doc);
// AWS's GrantListEntry without KeyId and IssuingAccount (the caller's to
// add), and its Constraints structure.
nlohmann::json GrantListEntry(const Grant& g);

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_GRANT_H_
