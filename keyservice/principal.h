// Who is calling: a local Unix user (from SO_PEERCRED on the Unix socket) or
// an access key (SigV4 on the loopback TCP endpoint).
#ifndef ENVELOPE_KEYSERVICE_PRINCIPAL_H_
#define ENVELOPE_KEYSERVICE_PRINCIPAL_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "core/base/status.h"

namespace envelope::keyservice {

struct Principal {
  // kService: the daemon itself, for scheduled rotation and deletion.
  // kAnonymous: a TCP request whose signature did not verify.
  enum class Kind { kUnix, kAccessKey, kService, kAnonymous };
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

  // The names this principal answers to in a key policy, e.g.
  // {"user:alice", "uid:1000", "group:staff", "gid:50"} or {"key:ci-bot"}.
  std::vector<std::string> PolicyNames() const;
  // The one name used when a key policy must name this caller (CreateKey's
  // default policy): "user:NAME", else "uid:N", or "key:NAME".
  std::string PrimaryName() const;
  // The stable identity that owns things: the keys this principal creates
  // (for quotas) and its alias namespace. "uid:N" for a Unix caller (a uid,
  // not a name, so renaming a user changes nothing), "key:NAME" for an
  // access key, "" for the service itself and anonymous callers (who own
  // nothing and resolve no alias).
  std::string OwnerId() const;
  // Root, by uid: the local superuser always administers every key.
  bool is_root() const { return kind == Kind::kUnix && uid == 0; }
};

// Fills a kUnix principal from a connected Unix socket's peer credentials.
StatusOr<Principal> PrincipalFromUnixSocket(int fd);

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_PRINCIPAL_H_
