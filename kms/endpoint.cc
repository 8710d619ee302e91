#include "kms/endpoint.h"

#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/base/ascii.h"
#include "core/base/coding.h"
#include "core/base/path_trust.h"

namespace envelope::kms {

namespace {

constexpr std::string_view kUnixScheme = "unix:";
constexpr std::string_view kHttpScheme = "http://";
constexpr std::string_view kHttpsScheme = "https://";
constexpr std::string_view kAccepted =
    "expected unix:/ABSOLUTE/PATH or http://127.0.0.1:PORT "
    "(or http://localhost:PORT, http://[::1]:PORT)";
// sun_path holds the path and its terminating NUL.
constexpr size_t kMaxSocketPathInBytes = sizeof(sockaddr_un::sun_path) - 1;

Status Invalid(std::string_view text, std::string_view why) {
  return Status::InvalidArgument("invalid key service endpoint '" +
                                 std::string(text) + "': " + std::string(why));
}

using ascii::IsDigit;
using ascii::StartsWithIgnoreCase;

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

// 127.0.0.0/8 in strict dotted-quad form.
bool IsLoopbackIpv4(std::string_view host) {
  int parts = 0;
  while (true) {
    size_t dot = host.find('.');
    std::string_view part = host.substr(0, dot);
    auto v = ParseDecimal(part, 3);
    if (!v || *v > 255 || (parts == 0 && *v != 127)) return false;
    ++parts;
    if (dot == std::string_view::npos) break;
    host.remove_prefix(dot + 1);
  }
  return parts == 4;
}

StatusOr<Endpoint> ParseHttp(std::string_view text, std::string_view rest) {
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find_first_of("/?#") != std::string_view::npos) {
    return Invalid(text, "a path or query after the port is not allowed");
  }
  if (rest.find('@') != std::string_view::npos) {
    return Invalid(text,
                   "credentials in the URL are not supported (use "
                   "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)");
  }
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
      return Invalid(text,
                     "refusing non-loopback host [" + std::string(host) +
                         "]: the key service listens on loopback only "
                         "(127.0.0.1, localhost, [::1])");
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
      return Invalid(text,
                     "refusing non-loopback host '" + std::string(host) +
                         "': the key service listens on loopback only "
                         "(127.0.0.1, localhost, [::1]); the TCP endpoint has "
                         "no TLS");
    }
  }
  auto number = ParseDecimal(port, 5);
  if (!number || *number == 0 || *number > 65535) {
    return Invalid(text, "the port must be a number from 1 to 65535");
  }
  ep.port = static_cast<uint16_t>(*number);
  return ep;
}

// getenv, with an empty value counted as unset.
const char* GetNonEmptyEnv(const char* name) {
  const char* v = std::getenv(name);
  return (v != nullptr && v[0] != '\0') ? v : nullptr;
}

}  // namespace

std::string Endpoint::ToString() const {
  if (kind == kUnix) return std::string(kUnixScheme) + socket_path;
  return std::string(kHttpScheme) + HostHeader();
}

std::string Endpoint::HostHeader() const {
  if (kind == kUnix) return "localhost";
  const bool ipv6 = host.find(':') != std::string::npos;
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
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
  if (StartsWithIgnoreCase(text, kHttpsScheme)) {
    return Invalid(text,
                   "https is not supported: the key service's TCP endpoint is "
                   "plain HTTP on loopback, with SigV4-signed requests; use "
                   "http://127.0.0.1:PORT or a unix: socket");
  }
  if (StartsWithIgnoreCase(text, kHttpScheme)) {
    return ParseHttp(text, text.substr(kHttpScheme.size()));
  }
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
