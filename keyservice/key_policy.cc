#include "keyservice/key_policy.h"

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "keyservice/json_output.h"

namespace envelope::keyservice {

namespace {

using json = nlohmann::json;

constexpr size_t kMaxPolicySizeInBytes = 32768;  // AWS's key policy limit

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return out;
}

Status Malformed(const std::string& msg) {
  return Status::InvalidArgument("MalformedPolicyDocument: " + msg);
}

// A string or an array of strings, as AWS allows for most elements.
Status StringList(const json& v, const std::string& what,
                  std::vector<std::string>* out) {
  if (v.is_string()) {
    out->push_back(v.get<std::string>());
  } else if (v.is_array() && !v.empty()) {
    for (const auto& e : v) {
      if (!e.is_string()) return Malformed(what + " must hold strings");
      out->push_back(e.get<std::string>());
    }
  } else {
    return Malformed(what + " must be a string or a non-empty array of strings");
  }
  return Status::Ok();
}

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(),
                                   [](unsigned char c) { return std::isdigit(c); });
}

constexpr char kPrincipalForms[] =
    "*, user:NAME, uid:N, group:NAME, gid:N, key:NAME, tls:SUBJECT";

Status ValidatePrincipalName(const std::string& name) {
  if (name == "*") return Status::Ok();
  auto colon = name.find(':');
  if (colon == std::string::npos || colon + 1 == name.size()) {
    return Malformed("principal \"" + name + "\" is not one of " + kPrincipalForms);
  }
  std::string kind = name.substr(0, colon);
  std::string rest = name.substr(colon + 1);
  // tls:SUBJECT, the RFC 2253 subject of a client certificate ("tls:CN=host-a").
  if (kind == "user" || kind == "group" || kind == "key" || kind == "tls") return Status::Ok();
  if ((kind == "uid" || kind == "gid") && AllDigits(rest)) return Status::Ok();
  return Malformed("principal \"" + name + "\" is not one of " + kPrincipalForms);
}

}  // namespace

bool WildcardMatch(std::string_view pattern, std::string_view text) {
  // Iterative glob with single-star backtracking: linear in practice.
  size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

StatusOr<KeyPolicy> KeyPolicy::Parse(std::string_view text) {
  if (text.size() > kMaxPolicySizeInBytes) {
    return Malformed("policy is larger than 32768 bytes");
  }
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Malformed("policy is not a JSON object");
  }
  KeyPolicy policy;
  for (const auto& [key, value] : doc.items()) {
    if (key == "Version") {
      if (!value.is_string() || (value != "2012-10-17" && value != "2008-10-17")) {
        return Malformed("Version must be \"2012-10-17\" or \"2008-10-17\"");
      }
    } else if (key == "Id") {
      if (!value.is_string()) return Malformed("Id must be a string");
    } else if (key != "Statement") {
      return Malformed("unknown element \"" + key + "\"");
    }
  }
  if (!doc.contains("Statement")) return Malformed("Statement is missing");
  json statements = doc["Statement"];
  if (statements.is_object()) statements = json::array({statements});
  if (!statements.is_array() || statements.empty()) {
    return Malformed("Statement must be an object or a non-empty array");
  }
  for (const auto& st : statements) {
    if (!st.is_object()) return Malformed("each Statement must be an object");
    Statement s;
    for (const auto& [key, value] : st.items()) {
      if (key == "Sid") {
        if (!value.is_string()) return Malformed("Sid must be a string");
      } else if (key == "Effect") {
        if (value == "Allow") {
          s.allow = true;
        } else if (value == "Deny") {
          s.allow = false;
        } else {
          return Malformed("Effect must be \"Allow\" or \"Deny\"");
        }
      } else if (key == "Principal") {
        if (value.is_string()) {
          if (value != "*") return Malformed("Principal string must be \"*\"");
          s.any_principal = true;
        } else if (value.is_object() && !value.empty()) {
          for (const auto& [pkind, names] : value.items()) {
            if (pkind != "Local" && pkind != "AWS") {
              return Malformed("Principal kind \"" + pkind +
                               "\" is not supported (use \"Local\" or \"AWS\")");
            }
            std::vector<std::string> list;
            ENVELOPE_RETURN_IF_ERROR(StringList(names, "Principal", &list));
            for (auto& n : list) {
              ENVELOPE_RETURN_IF_ERROR(ValidatePrincipalName(n));
              if (n == "*") s.any_principal = true;
              s.principals.push_back(std::move(n));
            }
          }
        } else {
          return Malformed("Principal must be \"*\" or an object");
        }
      } else if (key == "Action") {
        std::vector<std::string> list;
        ENVELOPE_RETURN_IF_ERROR(StringList(value, "Action", &list));
        for (const auto& a : list) {
          std::string lower = Lower(a);
          if (lower != "*" && lower.rfind("kms:", 0) != 0) {
            return Malformed("Action \"" + a + "\" is not a kms: action");
          }
          s.actions.push_back(lower);
        }
      } else if (key == "Resource") {
        ENVELOPE_RETURN_IF_ERROR(StringList(value, "Resource", &s.resources));
      } else if (key == "Condition") {
        ENVELOPE_ASSIGN_OR_RETURN(s.condition, PolicyCondition::Parse(value));
      } else if (key == "NotAction" || key == "NotPrincipal" || key == "NotResource") {
        return Malformed("\"" + key + "\" is not supported by envelope-keyd");
      } else {
        return Malformed("unknown Statement element \"" + key + "\"");
      }
    }
    if (!st.contains("Effect")) return Malformed("Statement without Effect");
    if (!st.contains("Principal")) return Malformed("Statement without Principal");
    if (!st.contains("Action")) return Malformed("Statement without Action");
    if (!st.contains("Resource")) return Malformed("Statement without Resource");
    policy.statements_.push_back(std::move(s));
  }
  return policy;
}

std::string KeyPolicy::DefaultFor(const Principal& creator) {
  json principals = json::array({"user:root"});
  std::string creator_name = creator.PrimaryName();
  if (creator_name != "user:root") principals.push_back(creator_name);
  json doc = {
      {"Version", "2012-10-17"},
      {"Id", "key-default-1"},
      {"Statement",
       json::array({{{"Sid", "Enable key administration and use by its creator and root"},
                     {"Effect", "Allow"},
                     {"Principal", {{"Local", principals}}},
                     {"Action", "kms:*"},
                     {"Resource", "*"}}})}};
  return DumpJson(doc, 2);
}

KeyPolicy::Decision KeyPolicy::Evaluate(const Principal& who, std::string_view action,
                                        std::string_view resource_arn,
                                        const RequestFacts& facts) const {
  const std::vector<std::string> names = who.PolicyNames();
  const std::string lower_action = Lower(action);
  bool allowed = false;
  for (const Statement& s : statements_) {
    bool principal_match = s.any_principal;
    for (size_t i = 0; !principal_match && i < s.principals.size(); ++i) {
      principal_match = std::find(names.begin(), names.end(), s.principals[i]) != names.end();
    }
    if (!principal_match) continue;
    bool action_match = std::any_of(s.actions.begin(), s.actions.end(), [&](const std::string& a) {
      return WildcardMatch(a, lower_action);
    });
    if (!action_match) continue;
    bool resource_match = std::any_of(s.resources.begin(), s.resources.end(),
                                      [&](const std::string& r) {
                                        return WildcardMatch(r, resource_arn);
                                      });
    if (!resource_match) continue;
    if (!s.condition.empty() && !s.condition.Holds(facts, !s.allow)) continue;
    if (!s.allow) return Decision::kExplicitDeny;
    allowed = true;
  }
  return allowed ? Decision::kAllow : Decision::kImplicitDeny;
}

}  // namespace envelope::keyservice
