// Where the key service listens, and the credentials and region a client
// uses to reach it.
//
// Three transports: a Unix stream socket (the default; the daemon identifies
// callers by SO_PEERCRED), plain HTTP on loopback TCP, and HTTPS to any
// host (AWS KMS, or a KMS-compatible service behind TLS). Every request
// over TCP is SigV4-signed. Written forms:
//
//   unix:/run/envelope-keyd/kms.sock   absolute path, at most 107 bytes
//   http://127.0.0.1:7878              any 127.0.0.0/8 address
//   http://localhost:7878
//   http://[::1]:7878
//   https://kms.example.com[:PORT]     any DNS name, IPv4 or [IPv6] address;
//                                      port 443 by default
//   aws:REGION                         AWS's public endpoint for REGION:
//                                      https://kms.REGION.amazonaws.com
//                                      (amazonaws.com.cn for cn-* regions)
//   aws                                where the AWS CLI would send a KMS
//                                      call: $AWS_ENDPOINT_URL_KMS, else
//                                      $AWS_ENDPOINT_URL, else aws:REGION
//                                      with REGION from ResolveAwsRegion
//                                      (kms/aws_config.h)
//
// Plain http to a host that is not loopback is refused: requests carry
// plaintext keys, and envelope-keyd's TCP listener is loopback-only and has
// no TLS. A remote service is reached over https.
//
// Thread safety: Endpoint is a value. ParseEndpoint is pure except for the
// form "aws", which reads the environment and the AWS config file, as do
// DefaultSocketPath, ResolveEndpoint, CredentialsFromEnvironment and
// RegionFromEnvironment (getenv): they must not race with setenv.
#ifndef ENVELOPE_KMS_ENDPOINT_H_
#define ENVELOPE_KMS_ENDPOINT_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/base/status.h"
#include "kms/sigv4.h"

namespace envelope::kms {

// The environment variable that names the endpoint when no flag does.
inline constexpr char kEndpointEnvironmentVariable[] = "ENVELOPE_KMS_ENDPOINT";
inline constexpr char kDefaultRegion[] = "us-east-1";

struct Endpoint {
  enum Kind { kUnix, kTcp, kHttps };
  Kind kind = kUnix;
  // kUnix: the absolute socket path.
  std::string socket_path;
  // kTcp: "localhost", a dotted 127.x.y.z address, or "::1" (no brackets).
  // kHttps: a lower-case DNS name, a dotted IPv4 address, or an IPv6
  // address (no brackets).
  std::string host;
  uint16_t port = 0;

  // Facts the written form gave about the service; not part of its
  // identity (operator== ignores them):
  // Set by the forms "aws:REGION" and "aws": the user asked for AWS KMS, or
  // wherever the AWS CLI would send a KMS call, whatever the host.
  bool aws = false;
  // The region to sign for when the form implies one: REGION of
  // aws:REGION, the resolved region of "aws", and REGION of an https host
  // kms.REGION.amazonaws.com[.cn] or kms-fips.REGION.amazonaws.com (AWS
  // refuses a signature for any other region there). "" otherwise: the
  // caller signs with ResolveAwsRegion (see AwsSigningRegion in
  // kms/aws_config.h).
  std::string region;

  // The written form ParseEndpoint accepts: "unix:/path",
  // "http://host:port" or "https://host[:port]" (an IPv6 host in brackets,
  // no ":443" for https). aws:REGION and aws are written as the https URL
  // they stand for. Used in every message that names the service.
  std::string ToString() const;
  // The value of the HTTP Host header (and so of SigV4's signed "host"):
  // "localhost" for a Unix socket (which has no host), "host:port" for
  // http, and for https "host" on port 443 and "host:port" otherwise, as
  // browsers, curl and the AWS SDKs send it.
  std::string HostHeader() const;

  // The same server: kind, socket path, host and port.
  bool operator==(const Endpoint& other) const {
    return kind == other.kind && socket_path == other.socket_path &&
           host == other.host && port == other.port;
  }
};

inline constexpr uint16_t kDefaultHttpsPort = 443;

// Parses one of the forms above. InvalidArgument, with a message that says
// what is accepted, for anything else: a relative or over-long socket path,
// a plain http host that is not loopback, a malformed host, region or port,
// a missing http port, userinfo, a path or query after the port (a single
// trailing '/' is allowed). For "aws", a malformed $AWS_ENDPOINT_URL_KMS or
// $AWS_ENDPOINT_URL fails with the variable's name in front, and the
// errors of ResolveAwsRegion pass through.
StatusOr<Endpoint> ParseEndpoint(std::string_view text);

// True for AWS KMS itself: the forms aws:REGION and aws (whatever
// AWS_ENDPOINT_URL says), and https hosts under amazonaws.com or
// amazonaws.com.cn. Such a service speaks only AWS's published API.
bool IsAwsEndpoint(const Endpoint& endpoint);

// The socket the daemon listens on and clients connect to by default:
//   uid 0                      /run/envelope-keyd/kms.sock
//   XDG_RUNTIME_DIR set        $XDG_RUNTIME_DIR/envelope-keyd/kms.sock
//   otherwise                  /tmp/envelope-keyd-<uid>/kms.sock
// for the effective uid. The daemon uses this same function, so a client and
// a daemon run by the same user meet without configuration. The path is
// predictable, so both sides check its directory (CheckSocketDirectory) and
// clients check the server's uid: another user who creates it first gets
// nothing.
std::string DefaultSocketPath();
// The same rule for an explicit uid and XDG_RUNTIME_DIR value (nullptr for
// unset). An empty or relative XDG_RUNTIME_DIR counts as unset, as the XDG
// Base Directory specification says to ignore it.
std::string DefaultSocketPathFor(uid_t uid, const char* xdg_runtime_dir);

// Who may own the directory that holds a Unix socket: it must pass
// CheckNotReplaceable (core/base/path_trust.h) for `self`: a directory, not
// a symlink, owned by `self` or root and not writable by group or others,
// and so every directory above it up to "/" (a directory above may be
// writable by others if it is sticky, like /tmp). Anyone else who can write
// there, or replace a directory on the way, can unlink the real socket and
// put their own in its place (or, for a default path in /tmp, create the
// directory first), so a client refuses to connect through such a
// directory and the daemon refuses to listen in one. The server's identity
// itself is checked after connecting (SO_PEERCRED, see
// HttpConnection::Connect).
// FailedPrecondition naming the socket, the path at fault and what is wrong
// with it; Unavailable with the errno text if a component cannot be
// examined (e.g. the directory does not exist); InvalidArgument for a
// relative path.
Status CheckSocketDirectory(std::string_view socket_path, uid_t self);

// The endpoint a client uses: `flag_value` if non-empty, else
// $ENVELOPE_KMS_ENDPOINT if non-empty, else unix:DefaultSocketPath().
// A malformed value fails with a message naming where it came from.
StatusOr<Endpoint> ResolveEndpoint(std::string_view flag_value);

// The environment alone, without the AWS config files; new code should use
// ResolveAwsCredentials and AwsSigningRegion (kms/aws_config.h), which
// follow the AWS CLI's whole chain.
//
// Access-key credentials for the TCP endpoint from AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY and (optional) AWS_SESSION_TOKEN. std::nullopt if
// neither the id nor the secret is set; InvalidArgument if only one is. The
// secret is copied from the environment straight into SecretBytes.
StatusOr<std::optional<Credentials>> CredentialsFromEnvironment();

// AWS_REGION, else AWS_DEFAULT_REGION, else "us-east-1" (empty values count
// as unset), as the AWS SDKs and CLI choose.
std::string RegionFromEnvironment();

}  // namespace envelope::kms

#endif  // ENVELOPE_KMS_ENDPOINT_H_
