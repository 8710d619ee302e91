// envelope-keyd --restore: a backup (keyservice/backup.h) made into a new
// data directory, opened with the recovery key's shares.
#ifndef ENVELOPE_KEYSERVICE_RESTORE_H_
#define ENVELOPE_KEYSERVICE_RESTORE_H_

#include <string>

#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"

namespace envelope::keyservice {

struct RestoreOptions {
  std::string backup_path;
  std::string data_dir;       // must hold no store yet
  std::string root_key_path;  // where the root key file is written
  // Shares, one per line, from this descriptor; from the terminal (a
  // prompt per share) if < 0. Reading stops once the backup's threshold
  // of valid shares is in, or at end of input.
  int shares_fd = -1;
};

// Writes the backup's store (data.mdb) and root key (a key file: the
// restored directory is a key-file one, whatever the original was) and
// returns a line for the log. The caller then starts as usual; the audit
// log starts anew (the backup carries its anchor, not the log).
// FailedPrecondition if the data directory already has a store or too few
// shares were given; PermissionDenied if the shares do not open it.
StatusOr<std::string> RestoreBackup(const RestoreOptions& options);

// Asks at the terminal for as many shares as the backup at `backup_path`
// needs and returns them as lines (in the secure heap, `*size` bytes used),
// for a daemon that reads them later from a pipe (envelope-keyd without -f
// leaves its terminal first).
StatusOr<crypto::SecretBytes> ReadSharesFromTerminal(const std::string& backup_path,
                                                     size_t* size);

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_RESTORE_H_
