// Where the key service listens, and the credentials and region a client
// uses to reach it.
//
// Two transports: a Unix stream socket (the default; the daemon identifies
// callers by SO_PEERCRED) and plain HTTP on loopback TCP, where every request
// is SigV4-signed. Written forms:
//
//   unix:/run/envelope-keyd/kms.sock   absolute path, at most 107 bytes
//   http://127.0.0.1:7878              any 127.0.0.0/8 address
//   http://localhost:7878
//   http://[::1]:7878
//
// https and non-loopback hosts are refused: the service is local by design
// and its TCP listener has no TLS, so a remote host could only be reached
// in the clear.
//
// Thread safety: ParseEndpoint and Endpoint are pure. DefaultSocketPath,
// ResolveEndpoint, CredentialsFromEnvironment and RegionFromEnvironment
// read the environment (getenv), so they must not race with setenv.
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
  enum Kind { kUnix, kTcp };
  Kind kind = kUnix;
  // kUnix: the absolute socket path.
  std::string socket_path;
  // kTcp: "localhost", a dotted 127.x.y.z address, or "::1" (no brackets).
  std::string host;
  uint16_t port = 0;

  // The written form ParseEndpoint accepts: "unix:/path" or
  // "http://host:port" (an IPv6 host in brackets). Used in every message
  // that names the service.
  std::string ToString() const;
  // The value of the HTTP Host header: "localhost" for a Unix socket (which
  // has no host), else "host:port" as written.
  std::string HostHeader() const;

  bool operator==(const Endpoint&) const = default;
};

// Parses one of the forms above. InvalidArgument, with a message that says
// what is accepted, for anything else: a relative or over-long socket path,
// https, a host that is not loopback, a missing or out-of-range port, a
// path or query after the port (a single trailing '/' is allowed).
StatusOr<Endpoint> ParseEndpoint(std::string_view text);

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
