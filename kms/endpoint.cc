#include "kms/endpoint.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/base/ascii.h"
#include "core/base/coding.h"
#include "core/base/path_trust.h"
#include "kms/aws_config.h"

namespace envelope::kms {

namespace {

constexpr std::string_view kUnixScheme = "unix:";
constexpr std::string_view kHttpScheme = "http://";
constexpr std::string_view kHttpsScheme = "https://";
constexpr std::string_view kAwsScheme = "aws:";
constexpr std::string_view kAwsBare = "aws";
constexpr std::string_view kAccepted =
    "expected unix:/ABSOLUTE/PATH, http://127.0.0.1:PORT "
    "(or http://localhost:PORT, http://[::1]:PORT), https://HOST[:PORT], "
    "aws:REGION or aws";
constexpr std::string_view kUseHttps =
    "; plain http is for envelope-keyd on loopback, a remote key service is "
    "reached over https://HOST";
// sun_path holds the path and its terminating NUL.
constexpr size_t kMaxSocketPathInBytes = sizeof(sockaddr_un::sun_path) - 1;
// RFC 1035 section 2.3.4.
constexpr size_t kMaxHostNameInChars = 253;
constexpr size_t kMaxLabelInChars = 63;
// AWS's public endpoint: https://kms.REGION.amazonaws.com, under
// amazonaws.com.cn for the China regions (AWS General Reference, "AWS Key
// Management Service endpoints and quotas").
constexpr std::string_view kAwsDomain = ".amazonaws.com";
constexpr std::string_view kAwsChinaDomain = ".amazonaws.com.cn";
constexpr std::string_view kAwsChinaRegionPrefix = "cn-";

Status Invalid(std::string_view text, std::string_view why) {
  return Status::InvalidArgument("invalid key service endpoint '" +
                                 std::string(text) + "': " + std::string(why));
}

using ascii::IsDigit;
using ascii::StartsWithIgnoreCase;

// open + s + close + rest, built with append: GCC 12 warns falsely
// (-Wrestrict) on a one-character literal + std::string.
std::string Enclosed(char open, std::string_view s, char close, std::string_view rest) {
  std::string out(1, open);
  out.append(s).append(1, close).append(rest);
  return out;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.substr(s.size() - suffix.size()) == suffix;
}

// A decimal number of 1..max_digits digits without a leading zero (so that
// "0177" cannot mean octal to one reader and decimal to another).
std::optional<uint32_t> ParseDecimal(std::string_view s, size_t max_digits) {
  if (s.empty() || s.size() > max_digits) return std::nullopt;
  if (s.size() > 1 && s[0] == '0') return std::nullopt;
  uint32_t v = 0;
  for (char c : s) {
    if (!IsDigit(c)) return std::nullopt;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  return v;
}

// Four decimal parts of 0..255, nothing else of inet_aton's forms.
bool IsStrictIpv4(std::string_view host) {
  int parts = 0;
  while (true) {
    size_t dot = host.find('.');
    auto v = ParseDecimal(host.substr(0, dot), 3);
    if (!v || *v > 255) return false;
    ++parts;
    if (dot == std::string_view::npos) break;
    host.remove_prefix(dot + 1);
  }
  return parts == 4;
}

// 127.0.0.0/8 in strict dotted-quad form.
bool IsLoopbackIpv4(std::string_view host) {
  return IsStrictIpv4(host) && host.substr(0, 4) == "127.";
}

// What follows "http://" or "https://": HOST[:PORT] with an optional
// trailing '/', and no userinfo, path, query or fragment.
StatusOr<std::string_view> UrlAuthority(std::string_view text,
                                        std::string_view rest) {
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find_first_of("/?#") != std::string_view::npos) {
    return Invalid(text, "a path or query after the port is not allowed");
  }
  if (rest.find('@') != std::string_view::npos) {
    return Invalid(text,
                   "credentials in the URL are not supported (use "
                   "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or an AWS "
                   "profile)");
  }
  return rest;
}

StatusOr<uint16_t> ParsePort(std::string_view text, std::string_view port) {
  auto number = ParseDecimal(port, 5);
  if (!number || *number == 0 || *number > 65535) {
    return Invalid(text, "the port must be a number from 1 to 65535");
  }
  return static_cast<uint16_t>(*number);
}

StatusOr<Endpoint> ParseLoopbackHttp(std::string_view text,
                                     std::string_view rest) {
  ENVELOPE_ASSIGN_OR_RETURN(rest, UrlAuthority(text, rest));
  Endpoint ep;
  ep.kind = Endpoint::kTcp;
  std::string_view host, port;
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      return Invalid(text, "unterminated '[' in the host");
    }
    host = rest.substr(1, close - 1);
    rest.remove_prefix(close + 1);
    if (rest.empty() || rest.front() != ':') {
      return Invalid(text, "a port is required, e.g. http://[::1]:7878");
    }
    port = rest.substr(1);
    if (host != "::1") {
      return Invalid(text, "refusing non-loopback host [" + std::string(host) +
                               "] over plain http" + std::string(kUseHttps));
    }
    ep.host = "::1";
  } else {
    size_t colon = rest.find(':');
    if (colon == std::string_view::npos) {
      return Invalid(text, "a port is required, e.g. http://127.0.0.1:7878");
    }
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    std::string lower = ascii::ToLower(host);
    if (lower == "localhost") {
      ep.host = lower;
    } else if (IsLoopbackIpv4(host)) {
      ep.host = std::string(host);
    } else {
      return Invalid(text, "refusing non-loopback host '" + std::string(host) +
                               "' over plain http" + std::string(kUseHttps));
    }
  }
  ENVELOPE_ASSIGN_OR_RETURN(ep.port, ParsePort(text, port));
  return ep;
}

bool IsHostLabelChar(char c) {
  return (c >= 'a' && c <= 'z') || IsDigit(c) || c == '-';
}

// A lower-case DNS name (RFC 1123 section 2.1: letters, digits and '-',
// labels of 1 to 63 characters that do not start or end with '-'). A name
// whose last label is all digits is refused: getaddrinfo reads "127.1" or
// "10.1.1" as IPv4 addresses (inet_aton's forms), so the name checked
// against the certificate would not be what was connected to.
bool IsDnsName(std::string_view host) {
  if (host.empty() || host.size() > kMaxHostNameInChars) return false;
  std::string_view last;
  while (true) {
    size_t dot = host.find('.');
    std::string_view label = host.substr(0, dot);
    if (label.empty() || label.size() > kMaxLabelInChars ||
        label.front() == '-' || label.back() == '-' ||
        !std::all_of(label.begin(), label.end(), IsHostLabelChar)) {
      return false;
    }
    last = label;
    if (dot == std::string_view::npos) break;
    host.remove_prefix(dot + 1);
  }
  return !ascii::IsAllDigits(last);
}

// REGION of kms.REGION.amazonaws.com[.cn] or kms-fips.REGION.amazonaws.com,
// else "".
std::string RegionOfAwsHost(std::string_view host) {
  std::string_view rest;
  if (EndsWith(host, kAwsChinaDomain)) {
    rest = host.substr(0, host.size() - kAwsChinaDomain.size());
  } else if (EndsWith(host, kAwsDomain)) {
    rest = host.substr(0, host.size() - kAwsDomain.size());
  } else {
    return "";
  }
  for (std::string_view prefix : {"kms.", "kms-fips."}) {
    if (rest.substr(0, prefix.size()) == prefix) {
      std::string_view region = rest.substr(prefix.size());
      if (IsValidAwsRegion(region)) return std::string(region);
    }
  }
  return "";
}

StatusOr<Endpoint> ParseHttps(std::string_view text, std::string_view rest) {
  ENVELOPE_ASSIGN_OR_RETURN(rest, UrlAuthority(text, rest));
  Endpoint ep;
  ep.kind = Endpoint::kHttps;
  ep.port = kDefaultHttpsPort;
  std::string_view port;
  bool has_port = false;
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      return Invalid(text, "unterminated '[' in the host");
    }
    const std::string host = ascii::ToLower(rest.substr(1, close - 1));
    in6_addr unused;
    if (::inet_pton(AF_INET6, host.c_str(), &unused) != 1) {
      return Invalid(text, Enclosed('[', host, ']', " is not an IPv6 address"));
    }
    ep.host = host;
    rest.remove_prefix(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return Invalid(text, "expected ':PORT' after the IPv6 address");
      }
      has_port = true;
      port = rest.substr(1);
    }
  } else {
    size_t colon = rest.find(':');
    if (colon != std::string_view::npos) {
      has_port = true;
      port = rest.substr(colon + 1);
      rest = rest.substr(0, colon);
    }
    const std::string host = ascii::ToLower(rest);
    in_addr unused;
    if (host.empty()) {
      return Invalid(text, "the host is missing");
    } else if (IsStrictIpv4(host)) {
      ep.host = host;
    } else if (host.find_first_not_of("0123456789.") == std::string::npos ||
               ::inet_aton(host.c_str(), &unused) != 0) {
      return Invalid(text, Enclosed('\'', host, '\'',
                                    " is not a dotted-quad IPv4 address "
                                    "(write four decimal parts)"));
    } else if (IsDnsName(host)) {
      ep.host = host;
    } else {
      return Invalid(text, Enclosed('\'', rest, '\'',
                                    " is not a host name (letters, digits, "
                                    "'-' and '.'), an IPv4 address or an "
                                    "[IPv6] address"));
    }
  }
  if (has_port) {
    ENVELOPE_ASSIGN_OR_RETURN(ep.port, ParsePort(text, port));
  }
  ep.region = RegionOfAwsHost(ep.host);
  return ep;
}

// An http:// or https:// URL: the forms an AWS endpoint URL may take.
StatusOr<Endpoint> ParseUrl(std::string_view text) {
  if (StartsWithIgnoreCase(text, kHttpsScheme)) {
    return ParseHttps(text, text.substr(kHttpsScheme.size()));
  }
  if (StartsWithIgnoreCase(text, kHttpScheme)) {
    return ParseLoopbackHttp(text, text.substr(kHttpScheme.size()));
  }
  return Invalid(text, "expected an https:// or loopback http:// URL");
}

StatusOr<Endpoint> AwsRegionalEndpoint(std::string_view text,
                                       std::string_view region) {
  if (!IsValidAwsRegion(region)) {
    return Invalid(text, Enclosed('\'', region, '\'',
                                  " is not an AWS region name (lower-case "
                                  "letters, digits and '-', e.g. eu-west-1)"));
  }
  const bool china = region.substr(0, kAwsChinaRegionPrefix.size()) ==
                     kAwsChinaRegionPrefix;
  Endpoint ep;
  ep.kind = Endpoint::kHttps;
  ep.host = "kms." + std::string(region) +
            std::string(china ? kAwsChinaDomain : kAwsDomain);
  ep.port = kDefaultHttpsPort;
  ep.aws = true;
  ep.region = std::string(region);
  return ep;
}

// "aws": the variables the AWS CLI reads for the endpoint of a KMS call
// (AWS SDKs and Tools Reference Guide, "Service-specific endpoints"),
// unless AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true; else the public
// endpoint of the configured region.
StatusOr<Endpoint> ResolveAwsEndpoint() {
  const char* ignore = GetNonEmptyEnv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
  if (ignore == nullptr || !ascii::EqualsIgnoreCase(ignore, "true")) {
    for (const char* name : {"AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL"}) {
      const char* url = GetNonEmptyEnv(name);
      if (url == nullptr) continue;
      auto ep = ParseUrl(url);
      if (!ep.ok()) return ep.status().WithContext(std::string("$") + name);
      ep->aws = true;
      if (ep->region.empty()) {
        ENVELOPE_ASSIGN_OR_RETURN(ep->region, ResolveAwsRegion());
      }
      return ep;
    }
  }
  ENVELOPE_ASSIGN_OR_RETURN(std::string region, ResolveAwsRegion());
  return AwsRegionalEndpoint(kAwsBare, region);
}

}  // namespace

std::string Endpoint::ToString() const {
  if (kind == kUnix) return std::string(kUnixScheme) + socket_path;
  return std::string(kind == kHttps ? kHttpsScheme : kHttpScheme) +
         HostHeader();
}

std::string Endpoint::HostHeader() const {
  if (kind == kUnix) return "localhost";
  const bool ipv6 = host.find(':') != std::string::npos;
  std::string out = ipv6 ? Enclosed('[', host, ']', "") : host;
  if (kind == kHttps && port == kDefaultHttpsPort) return out;
  return out + ":" + std::to_string(port);
}

bool IsAwsEndpoint(const Endpoint& endpoint) {
  if (endpoint.aws) return true;
  return endpoint.kind == Endpoint::kHttps &&
         (EndsWith(endpoint.host, kAwsDomain) ||
          EndsWith(endpoint.host, kAwsChinaDomain));
}

StatusOr<Endpoint> ParseEndpoint(std::string_view text) {
  if (text.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument(
        "invalid key service endpoint: contains a NUL byte");
  }
  if (StartsWithIgnoreCase(text, kUnixScheme)) {
    std::string_view path = text.substr(kUnixScheme.size());
    if (path.empty() || path.front() != '/') {
      return Invalid(text, "the socket path must be absolute (unix:/PATH)");
    }
    if (path.size() > kMaxSocketPathInBytes) {
      return Invalid(text, "the socket path is longer than " +
                               std::to_string(kMaxSocketPathInBytes) +
                               " bytes, the limit of a Unix socket address");
    }
    Endpoint ep;
    ep.kind = Endpoint::kUnix;
    ep.socket_path = std::string(path);
    return ep;
  }
  if (StartsWithIgnoreCase(text, kHttpsScheme) ||
      StartsWithIgnoreCase(text, kHttpScheme)) {
    return ParseUrl(text);
  }
  if (StartsWithIgnoreCase(text, kAwsScheme)) {
    return AwsRegionalEndpoint(text, text.substr(kAwsScheme.size()));
  }
  if (ascii::EqualsIgnoreCase(text, kAwsBare)) return ResolveAwsEndpoint();
  return Invalid(text, kAccepted);
}

std::string DefaultSocketPathFor(uid_t uid, const char* xdg_runtime_dir) {
  if (uid == 0) return "/run/envelope-keyd/kms.sock";
  if (xdg_runtime_dir != nullptr && xdg_runtime_dir[0] == '/') {
    return std::string(xdg_runtime_dir) + "/envelope-keyd/kms.sock";
  }
  return "/tmp/envelope-keyd-" + std::to_string(uid) + "/kms.sock";
}

std::string DefaultSocketPath() {
  return DefaultSocketPathFor(geteuid(), std::getenv("XDG_RUNTIME_DIR"));
}

Status CheckSocketDirectory(std::string_view socket_path, uid_t self) {
  const size_t slash = socket_path.rfind('/');
  if (socket_path.empty() || socket_path[0] != '/' || slash == std::string_view::npos) {
    return Status::InvalidArgument("the socket path must be absolute: " +
                                   std::string(socket_path));
  }
  const std::string dir(slash == 0 ? "/" : socket_path.substr(0, slash));
  Status s = CheckNotReplaceable(dir, self, PathKind::kDirectory);
  if (s.ok() || s.code() == StatusCode::kInvalidArgument) return s;
  if (s.code() != StatusCode::kFailedPrecondition) return Status::Unavailable(s.message());
  return Status::FailedPrecondition("refusing the key service socket " +
                                    std::string(socket_path) + ": " + s.message() +
                                    ", so another user could put their own server there");
}

StatusOr<Endpoint> ResolveEndpoint(std::string_view flag_value) {
  if (!flag_value.empty()) return ParseEndpoint(flag_value);
  if (const char* env = GetNonEmptyEnv(kEndpointEnvironmentVariable)) {
    auto ep = ParseEndpoint(env);
    if (!ep.ok()) {
      return ep.status().WithContext(
          std::string("$") + kEndpointEnvironmentVariable);
    }
    return ep;
  }
  Endpoint ep;
  ep.kind = Endpoint::kUnix;
  ep.socket_path = DefaultSocketPath();
  return ep;
}

StatusOr<std::optional<Credentials>> CredentialsFromEnvironment() {
  const char* id = GetNonEmptyEnv("AWS_ACCESS_KEY_ID");
  const char* secret = GetNonEmptyEnv("AWS_SECRET_ACCESS_KEY");
  if (id == nullptr && secret == nullptr) {
    return std::optional<Credentials>();
  }
  if (id == nullptr || secret == nullptr) {
    return Status::InvalidArgument(
        std::string(id == nullptr ? "AWS_SECRET_ACCESS_KEY" :
                                    "AWS_ACCESS_KEY_ID") +
        " is set but " +
        (id == nullptr ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY") +
        " is not; set both or neither");
  }
  Credentials creds;
  creds.access_key_id = id;
  ENVELOPE_ASSIGN_OR_RETURN(creds.secret_access_key,
                            crypto::SecretBytes::CopyOf(AsBytes(secret)));
  if (const char* token = GetNonEmptyEnv("AWS_SESSION_TOKEN")) {
    creds.session_token = token;
  }
  return std::optional<Credentials>(std::move(creds));
}

std::string RegionFromEnvironment() {
  if (const char* r = GetNonEmptyEnv("AWS_REGION")) return r;
  if (const char* r = GetNonEmptyEnv("AWS_DEFAULT_REGION")) return r;
  return kDefaultRegion;
}

}  // namespace envelope::kms
