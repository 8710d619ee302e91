// Who is calling: a local Unix user (from SO_PEERCRED on the Unix socket),
// an access key (SigV4 on the TCP endpoint, plain or TLS), or a TLS client
// certificate (mutual TLS, verified against --client-ca); and where the
// request came from (docs/KEYSERVICE.md, "Listeners, TLS and mutual TLS").
#ifndef ENVELOPE_KEYSERVICE_PRINCIPAL_H_
#define ENVELOPE_KEYSERVICE_PRINCIPAL_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "core/base/status.h"

namespace envelope::keyservice {

// The connection a request arrived on, for the audit trail. Not an
// identity: nothing is allowed or denied by it.
struct Origin {
  // kInternal: no connection (the daemon's own scheduled work, unit tests).
  enum class Transport { kInternal, kUnix, kTcp, kTls };
  Transport transport = Transport::kInternal;
  // kTcp, kTls: the peer's "ADDR:PORT" ("[ADDR]:PORT" for IPv6).
  std::string remote;
  // kTls: the RFC 2253 subject of the verified client certificate the
  // connection presented, if any (also when SigV4 names the principal).
  std::string tls_client_subject;

  // "unix", "tcp", "tls" or "internal".
  const char* transport_name() const;
};

// The prefix of a TLS client certificate's principal name:
// "tls:" + the certificate subject in RFC 2253 form, e.g. "tls:CN=host-a"
// or "tls:CN=host-a,O=Example" (most specific first, non-ASCII escaped).
inline constexpr char kTlsPrincipalPrefix[] = "tls:";

struct Principal {
  // kTlsCert: a TLS connection whose client certificate verified against
  // --client-ca, on a request without a SigV4 signature.
  // kService: the daemon itself, for scheduled rotation and deletion.
  // kAnonymous: a TCP request whose signature did not verify.
  enum class Kind { kUnix, kAccessKey, kTlsCert, kService, kAnonymous };
  Kind kind = Kind::kUnix;

  // kUnix: peer credentials, resolved names, and for the audit trail the
  // process id and executable.
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
  std::string user_name;                 // empty if the uid has no passwd entry
  std::vector<gid_t> gids;               // primary and supplementary
  std::vector<std::string> group_names;  // names of gids that have one
  std::string executable;

  // kAccessKey: the access key id and the principal name the access-keys
  // file gives it.
  std::string access_key_id;
  std::string access_key_name;

  // kTlsCert: the verified certificate's subject (RFC 2253, never empty),
  // and for the audit trail its issuer (RFC 2253) and serial (hex).
  std::string cert_subject;
  std::string cert_issuer;
  std::string cert_serial;

  // Where the request came from (any kind).
  Origin origin;

  // The names this principal answers to in a key policy, e.g.
  // {"user:alice", "uid:1000", "group:staff", "gid:50"}, {"key:ci-bot"} or
  // {"tls:CN=host-a"}.
  std::vector<std::string> PolicyNames() const;
  // The one name used when a key policy must name this caller (CreateKey's
  // default policy): "user:NAME", else "uid:N", or "key:NAME", or
  // "tls:SUBJECT".
  std::string PrimaryName() const;
  // The stable identity that owns things: the keys this principal creates
  // (for quotas) and its alias namespace. "uid:N" for a Unix caller (a uid,
  // not a name, so renaming a user changes nothing), "key:NAME" for an
  // access key, "tls:SUBJECT" for a certificate (every certificate the CA
  // issues for one subject is one principal), "" for the service itself
  // and anonymous callers (who own nothing and resolve no alias).
  std::string OwnerId() const;
  // Root, by uid: the local superuser always administers every key.
  bool is_root() const { return kind == Kind::kUnix && uid == 0; }
};

// Fills a kUnix principal from a connected Unix socket's peer credentials.
StatusOr<Principal> PrincipalFromUnixSocket(int fd);

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_PRINCIPAL_H_
