// A secrets file (tools/secrets_file.h) on disk: read whole, and rewritten
// under an exclusive lock by replacing it atomically (docs/SECRETS.md,
// "Concurrency and durability"). No key service.
//
// Writers take an exclusive flock on the file, re-read it under the lock,
// write a new file beside it (".NAME.tmp-XXXXXX", fsync'ed) and rename it
// over the old one, then fsync the directory; so readers need no lock and
// always see a whole file, and a crash leaves the old file or the new one.
//
// Thread safety: functions of the file system only; concurrent callers (in
// one process or many) are serialised by the flock.
#ifndef ENVELOPE_TOOLS_SECRETS_FILE_IO_H_
#define ENVELOPE_TOOLS_SECRETS_FILE_IO_H_

#include <functional>
#include <optional>
#include <string>

#include "core/base/status.h"
#include "tools/secrets_file.h"

namespace envelope::secrets {

// The file at `path` for a command that only reads: NotFound ("PATH does
// not exist") if there is none; Corruption if its header is unusable
// (SecretsFile::Parse).
StatusOr<SecretsFile> LoadSecretsFile(const std::string& path);

// What an update does with the file it found. `file` is nullopt when no
// file exists; the change may create one (SecretsFile::New), change it, or
// fail (nothing is written). Setting *changed to false skips the write.
// It may be called more than once (see UpdateSecretsFile), each time with
// the file as it is then: it must not keep effects of an earlier call.
using SecretsFileChange = std::function<Status(std::optional<SecretsFile>& file, bool* changed)>;

// Runs `change` on the file at `path` under its lock and, unless it fails
// or reports no change, puts the result in place atomically: over the old
// file (keeping its mode and, where permitted, owner), or as a new file of
// mode 0600 that does not replace one created meanwhile. A symlink is
// followed (the file it points to is replaced; the link stays). If another
// writer replaced the file while we waited for the lock, or created it
// before we could, `change` runs again on its version. A file whose header
// is damaged is never rewritten. Messages name the file as `path`.
Status UpdateSecretsFile(const std::string& path, const SecretsFileChange& change);

}  // namespace envelope::secrets

#endif  // ENVELOPE_TOOLS_SECRETS_FILE_IO_H_
