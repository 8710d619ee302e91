// What `envelopectl secrets exec` hands to execve: the environment block,
// with every secret in the secure heap, and the payload of the
// --secrets-fd mode (docs/SECRETS.md, "exec").
//
// Thread safety: values; no synchronisation.
#ifndef ENVELOPE_TOOLS_SECRETS_EXEC_H_
#define ENVELOPE_TOOLS_SECRETS_EXEC_H_

#include <string>
#include <string_view>
#include <vector>

#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"
#include "tools/secrets_file.h"

namespace envelope::secrets {

// Set in the child's environment by the fd mode: the descriptor number
// the secrets can be read from. Not secret.
inline constexpr char kSecretsFdVariable[] = "ENVELOPE_SECRETS_FD";

// The envp for execve. The "NAME=value" strings of the secrets live in one
// SecretBytes block; inherited strings are pointed to, not copied.
//
// Lifetime: the pointers in envp() point into this object and into the
// `inherited` array given to Build, both of which must outlive the execve.
class ExecEnvironment {
 public:
  struct Options {
    // The environment to start from (normally `environ`); ignored if
    // pristine. Each entry "NAME=value".
    char** inherited = nullptr;
    // Start from nothing: the child gets the secrets (and `extra`) only.
    bool pristine = false;
    // Plain (non-secret) "NAME=value" strings added last, e.g.
    // ENVELOPE_SECRETS_FD=3.
    std::vector<std::string> extra;
  };

  // The environment: inherited entries (unless pristine) whose name is
  // neither a secret's nor an extra's nor kSecretsFdVariable (a stale one
  // would point at the wrong descriptor), then the secrets in their order,
  // then `extra`.
  static StatusOr<ExecEnvironment> Build(const std::vector<NamedValue>& secrets,
                                         Options options);

  ExecEnvironment(ExecEnvironment&&) = default;
  ExecEnvironment& operator=(ExecEnvironment&&) = default;

  // NULL-terminated, as execve wants it.
  char** envp() { return pointers_.data(); }
  size_t size() const { return pointers_.size() - 1; }

 private:
  ExecEnvironment() = default;

  crypto::SecretBytes block_;
  std::vector<std::string> extra_;
  std::vector<char*> pointers_;
};

// The --secrets-fd payload: "NAME=value\0" for each secret in order — the
// layout of /proc/PID/environ and `env -0`, unambiguous because no value
// can hold a NUL.
StatusOr<crypto::SecretBytes> EncodeNulSeparated(
    const std::vector<NamedValue>& secrets);

}  // namespace envelope::secrets

#endif  // ENVELOPE_TOOLS_SECRETS_EXEC_H_
