#include "keyservice/grant.h"

#include <algorithm>
#include <array>

#include "core/base/ascii.h"
#include "core/base/base64.h"
#include "core/base/coding.h"
#include "core/crypto/random.h"

namespace envelope::keyservice {

using json = nlohmann::json;

namespace {

constexpr std::string_view kTokenPrefix = "egt1.";

// Sorted, for binary search.
constexpr std::array<std::string_view, 17> kOperations = {
    "CreateGrant",     "Decrypt",
    "DeriveSharedSecret", "DescribeKey",
    "Encrypt",         "GenerateDataKey",
    "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext",
    "GenerateDataKeyWithoutPlaintext", "GenerateMac",
    "GetPublicKey",    "ReEncryptFrom",
    "ReEncryptTo",     "RetireGrant",
    "Sign",            "Verify",
    "VerifyMac"};

// Allowed in a grant with constraints although the constraints do not
// apply to them (CreateGrant's are enforced by Covers instead).
bool ConstraintNeutral(std::string_view op) {
  return op == "CreateGrant" || op == "DescribeKey" || op == "RetireGrant";
}

// The context with its keys lower-cased, or nullopt if two keys differ
// only by case (ambiguous under a grant constraint: such a request is
// matched by no constraint, failing closed).
std::optional<EncryptionContext> LowerKeys(const EncryptionContext& context) {
  EncryptionContext out;
  for (const auto& [k, v] : context) {
    if (!out.emplace(ascii::ToLower(k), v).second) return std::nullopt;
  }
  return out;
}

// Every pair of `want` (keys lower-cased) is in `have` (keys lower-cased).
bool Includes(const EncryptionContext& have, const EncryptionContext& want) {
  for (const auto& [k, v] : want) {
    auto it = have.find(k);
    if (it == have.end() || it->second != v) return false;
  }
  return true;
}

bool Satisfies(const Grant& g, const EncryptionContext& context) {
  auto lowered = LowerKeys(context);
  if (!lowered) return false;
  if (g.context_equals) {
    auto want = LowerKeys(*g.context_equals);
    if (!want || *want != *lowered) return false;
  }
  if (g.context_subset) {
    auto want = LowerKeys(*g.context_subset);
    if (!want || !Includes(*lowered, *want)) return false;
  }
  return true;
}

Status CheckConstraint(const std::optional<EncryptionContext>& c, const char* field) {
  if (!c) return Status::Ok();
  if (c->size() > kMaxGrantConstraintPairs) {
    return Status::InvalidArgument(std::string(field) + " has more than " +
                                   std::to_string(kMaxGrantConstraintPairs) +
                                   " encryption context pairs");
  }
  for (const auto& [k, v] : *c) {
    if (k.empty()) return Status::InvalidArgument(std::string(field) + " has an empty key");
    if (v.size() > kMaxGrantConstraintValue) {
      return Status::InvalidArgument(std::string(field) + " value for '" + k +
                                     "' is longer than " +
                                     std::to_string(kMaxGrantConstraintValue) + " characters");
    }
  }
  if (!LowerKeys(*c)) {
    return Status::InvalidArgument(std::string(field) +
                                   " has keys that differ only by case (constraint keys are "
                                   "not case sensitive)");
  }
  return Status::Ok();
}


std::optional<EncryptionContext> ContextFrom(const json& doc, const char* field) {
  if (!doc.contains(field)) return std::nullopt;
  EncryptionContext c;
  for (const auto& [k, v] : doc.at(field).items()) c[k] = v.get<std::string>();
  return c;
}

}  // namespace

std::span<const std::string_view> GrantOperations() { return kOperations; }

bool GrantOperationTakesContext(std::string_view op) {
  return op == "Decrypt" || op == "Encrypt" || op == "GenerateDataKey" ||
         op == "GenerateDataKeyWithoutPlaintext" || op == "GenerateDataKeyPair" ||
         op == "GenerateDataKeyPairWithoutPlaintext" || op == "ReEncryptFrom" ||
         op == "ReEncryptTo";
}

std::string_view GrantOperationOf(std::string_view action) {
  constexpr std::string_view kPrefix = "kms:";
  if (action.substr(0, kPrefix.size()) == kPrefix) action.remove_prefix(kPrefix.size());
  return action;
}

bool Grant::Allows(std::span<const std::string> names, std::string_view operation,
                   std::span<const EncryptionContext> contexts, int64_t now) const {
  if (expired(now)) return false;
  if (std::find(names.begin(), names.end(), grantee) == names.end()) return false;
  if (!std::binary_search(operations.begin(), operations.end(), operation)) return false;
  if (!has_constraints() || !GrantOperationTakesContext(operation)) return true;
  if (contexts.empty()) return false;  // a constrained operation with no context: fail closed
  for (const EncryptionContext& c : contexts) {
    if (!Satisfies(*this, c)) return false;
  }
  return true;
}

bool Grant::Covers(const Grant& child) const {
  for (const std::string& op : child.operations) {
    if (!std::binary_search(operations.begin(), operations.end(), op)) return false;
  }
  if (expiry != 0 && (child.expiry == 0 || child.expiry > expiry)) return false;
  const auto child_equals =
      child.context_equals ? LowerKeys(*child.context_equals) : std::nullopt;
  const auto child_subset =
      child.context_subset ? LowerKeys(*child.context_subset) : std::nullopt;
  if (context_equals) {
    auto ours = LowerKeys(*context_equals);
    if (!ours || !child_equals || *child_equals != *ours) return false;
  }
  if (context_subset) {
    auto ours = LowerKeys(*context_subset);
    if (!ours) return false;
    const bool by_equals = child_equals && Includes(*child_equals, *ours);
    const bool by_subset = child_subset && Includes(*child_subset, *ours);
    if (!by_equals && !by_subset) return false;
  }
  return true;
}

bool Grant::SameRequest(const Grant& o) const {
  return name == o.name && grantee == o.grantee && retiring == o.retiring &&
         operations == o.operations && context_equals == o.context_equals &&
         context_subset == o.context_subset && expiry == o.expiry;
}

Status ValidateGrant(Grant* g) {
  if (g->operations.empty()) {
    return Status::InvalidArgument("Operations must name at least one operation");
  }
  for (const std::string& op : g->operations) {
    if (!std::binary_search(kOperations.begin(), kOperations.end(), op)) {
      std::string set;
      for (std::string_view known : kOperations) set += (set.empty() ? "" : ", ") + std::string(known);
      return Status::InvalidArgument("Value '" + op +
                                     "' at 'operations' failed to satisfy constraint: Member "
                                     "must satisfy enum value set: [" + set + "]");
    }
  }
  std::sort(g->operations.begin(), g->operations.end());
  g->operations.erase(std::unique(g->operations.begin(), g->operations.end()),
                      g->operations.end());
  if (g->context_equals && g->context_equals->empty()) g->context_equals.reset();
  if (g->context_subset && g->context_subset->empty()) g->context_subset.reset();
  ENVELOPE_RETURN_IF_ERROR(CheckConstraint(g->context_equals, "EncryptionContextEquals"));
  ENVELOPE_RETURN_IF_ERROR(CheckConstraint(g->context_subset, "EncryptionContextSubset"));
  if (g->has_constraints()) {
    for (const std::string& op : g->operations) {
      if (!GrantOperationTakesContext(op) && !ConstraintNeutral(op)) {
        return Status::InvalidArgument(
            "Grant constraints are not supported for " + op +
            ": encryption context constraints apply only to operations that take an "
            "encryption context (and may accompany DescribeKey, RetireGrant, CreateGrant)");
      }
    }
  }
  if (!ValidGrantPrincipal(g->grantee)) {
    return Status::InvalidArgument(
        "GranteePrincipal '" + g->grantee +
        "' is not a principal name of this key service (user:NAME, uid:N, group:NAME, gid:N, "
        "key:NAME or tls:SUBJECT)");
  }
  if (!g->retiring.empty() && !ValidGrantPrincipal(g->retiring)) {
    return Status::InvalidArgument(
        "RetiringPrincipal '" + g->retiring +
        "' is not a principal name of this key service (user:NAME, uid:N, group:NAME, gid:N, "
        "key:NAME or tls:SUBJECT)");
  }
  return Status::Ok();
}

bool ValidGrantPrincipal(std::string_view name) {
  if (name.empty() || name.size() > 256) return false;
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return false;
  }
  for (std::string_view prefix : {"user:", "uid:", "group:", "gid:", "key:", "tls:"}) {
    if (name.substr(0, prefix.size()) == prefix) return name.size() > prefix.size();
  }
  return false;
}

StatusOr<std::string> NewGrantId() {
  std::array<uint8_t, 32> bytes;
  ENVELOPE_RETURN_IF_ERROR(crypto::RandomPublicBytes(bytes));
  return HexEncode(bytes);
}

bool ValidGrantId(std::string_view id) {
  if (id.size() != 64) return false;
  return std::all_of(id.begin(), id.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

StatusOr<std::string> MakeGrantToken(const std::string& key_id, const std::string& grant_id) {
  std::array<uint8_t, 16> nonce;
  ENVELOPE_RETURN_IF_ERROR(crypto::RandomPublicBytes(nonce));
  const std::string inner = key_id + ":" + grant_id + ":" + HexEncode(nonce);
  return std::string(kTokenPrefix) + Base64Encode(AsBytes(inner));
}

StatusOr<GrantTokenParts> ParseGrantToken(std::string_view token) {
  auto bad = [] { return Status::InvalidArgument("the grant token was not issued by this service"); };
  if (token.substr(0, kTokenPrefix.size()) != kTokenPrefix) return bad();
  Bytes decoded;
  if (!Base64Decode(token.substr(kTokenPrefix.size()), &decoded)) return bad();
  const std::string inner(decoded.begin(), decoded.end());
  const size_t a = inner.find(':');
  const size_t b = a == std::string::npos ? a : inner.find(':', a + 1);
  if (b == std::string::npos) return bad();
  GrantTokenParts parts{inner.substr(0, a), inner.substr(a + 1, b - a - 1)};
  const std::string nonce = inner.substr(b + 1);
  KeyIdBytes id;
  if (!ParseKeyId(parts.key_id, &id) || FormatKeyId(id) != parts.key_id) return bad();
  if (!ValidGrantId(parts.grant_id) || nonce.size() != 32) return bad();
  Bytes nonce_bytes;
  if (!HexDecode(nonce, &nonce_bytes)) return bad();
  return parts;
}

json GrantToJson(const Grant& g) {
  json doc = {{"grant_id", g.grant_id},   {"name", g.name},
              {"creation_date", g.creation_date}, {"grantee", g.grantee},
              {"retiring", g.retiring},   {"issuer", g.issuer},
              {"operations", g.operations}, {"expiry", g.expiry}};
  if (g.context_equals) doc["context_equals"] = json(*g.context_equals);
  if (g.context_subset) doc["context_subset"] = json(*g.context_subset);
  return doc;
}

StatusOr<Grant> GrantFromJson(const json& doc) {
  try {
    Grant g;
    g.grant_id = doc.at("grant_id").get<std::string>();
    g.name = doc.at("name").get<std::string>();
    g.creation_date = doc.at("creation_date").get<int64_t>();
    g.grantee = doc.at("grantee").get<std::string>();
    g.retiring = doc.at("retiring").get<std::string>();
    g.issuer = doc.at("issuer").get<std::string>();
    g.operations = doc.at("operations").get<std::vector<std::string>>();
    g.expiry = doc.at("expiry").get<int64_t>();
    g.context_equals = ContextFrom(doc, "context_equals");
    g.context_subset = ContextFrom(doc, "context_subset");
    if (!ValidGrantId(g.grant_id)) return Status::Corruption("grant with a malformed id");
    Grant checked = g;
    if (!ValidateGrant(&checked).ok() || checked.operations != g.operations) {
      return Status::Corruption("grant " + g.grant_id + " does not validate");
    }
    return g;
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("grant: ") + e.what());
  }
}

json GrantListEntry(const Grant& g) {
  json e = {{"GrantId", g.grant_id},
            {"CreationDate", g.creation_date},
            {"GranteePrincipal", g.grantee},
            {"Operations", g.operations}};
  if (!g.name.empty()) e["Name"] = g.name;
  if (!g.retiring.empty()) e["RetiringPrincipal"] = g.retiring;
  if (g.has_constraints()) {
    json c = json::object();
    if (g.context_equals) c["EncryptionContextEquals"] = json(*g.context_equals);
    if (g.context_subset) c["EncryptionContextSubset"] = json(*g.context_subset);
    e["Constraints"] = c;
  }
  if (g.expiry != 0) e["Expiry"] = g.expiry;  // extension
  return e;
}

}  // namespace envelope::keyservice
