// envelopefs rekey: gives files new DEKs and re-encrypts their content
// (docs/ROTATION.md, "Re-keying file data"). Rotation re-wraps a DEK under a
// new master key version and never changes it; after a DEK, or a mount's
// memory, may have leaked, only new DEKs help, and that means rewriting the
// data.
//
// One file (RekeyFile): its plaintext is copied, chunk by chunk and with
// its holes kept, into a new backing file at a random temporary name in
// the same directory (`.envelopefs.tmp.rekey.HEX`, created O_EXCL, never
// shown by a mount), which gets a new DEK from the key service, the file's
// xattrs, mode, owner and times, and is fsynced. Then RENAME_EXCHANGE
// swaps the two names, the object now at the temporary name is checked to
// be the file that was copied (else the swap is undone: ESTALE), and it is
// unlinked. At every moment the name leads to a complete file, old or new:
// kill -9 leaves every file readable, at worst with a temporary beside it,
// which the next run removes.
//
// A volume (RekeyVolume), offline, or through its mount
// (RekeyThroughMount): every regular file with one link, or the files
// named. Resumable: the journal `.envelopefs.rekey` in the
// cipherdir's top directory lists the backing inode numbers this run made
// (each file's new object), written only after those renames are durable
// (the directories are fsynced first); a run that finds a journal skips
// the files it lists, and a run that completes removes it. The journal is
// also the lock: one run per volume at a time.
//
// Hard-linked files are skipped (one RENAME_EXCHANGE cannot move every
// name) and reported.
#ifndef ENVELOPE_FS_REKEY_H_
#define ENVELOPE_FS_REKEY_H_

#include <sys/stat.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/base/fd_io.h"
#include "core/base/status.h"
#include "core/format/content_file.h"
#include "fs/volume.h"

namespace envelope::fs {

inline constexpr char kRekeyTempPrefix[] = ".envelopefs.tmp.rekey.";
inline constexpr char kRekeyJournalName[] = ".envelopefs.rekey";
// Set on a file of a mounted volume (by root: the kernel allows trusted.*
// names to CAP_SYS_ADMIN only), it makes the mount re-key that file
// (fs/fuse_rekey.cc). The value is ignored.
inline constexpr char kRekeyXattrName[] = "trusted.envelopefs.rekey";

struct RekeyedFile {
  UniqueFd fd;  // O_RDWR, the new backing file (now at the file's name)
  std::unique_ptr<format::ContentFile> content;  // open on `fd`
  struct stat st {};                             // its stat
  uint64_t plaintext_bytes = 0;                  // the file's size
};

// Re-keys the regular file `name` of the backing directory `dirfd`, which
// must be the object (`dev`, `ino`) with one link (FailedPrecondition with
// EMLINK otherwise). Leaves the directory's fsync to the caller.
StatusOr<RekeyedFile> RekeyFile(Volume* volume, int dirfd, const std::string& name, dev_t dev,
                                ino_t ino);

struct RekeyOptions {
  // Plaintext paths ("/docs/a.txt") to re-key; empty: every file.
  std::vector<std::string> files;
  int threads = 2;
  bool progress = false;  // a bar with MiB and MiB/s on stderr
};

struct RekeySummary {
  uint64_t files = 0;           // regular files considered
  uint64_t rekeyed = 0;         // given a new DEK by this run
  uint64_t resumed = 0;         // skipped: an earlier run of this rekey did them
  uint64_t hard_linked = 0;     // skipped: more than one link
  uint64_t bytes = 0;           // plaintext bytes re-encrypted
  uint64_t stale_temporaries = 0;  // left by an interrupted run, removed
  double seconds = 0;
  std::vector<std::string> failures;  // "PATH: reason"
};

// Online, through the mount of the volume at `mountpoint`: every regular
// file under it (or the files named) is re-keyed by the mount itself
// (kRekeyXattrName), one request per file, while the volume is in use.
// Needs CAP_SYS_ADMIN. The journal and its resuming are as offline; the
// mount makes each file durable before it answers.
StatusOr<RekeySummary> RekeyThroughMount(const std::string& cipherdir,
                                         const std::string& mountpoint,
                                         const RekeyOptions& options);

// Offline: the volume must not be mounted (the caller checks). Fails
// (without a summary) only when the run cannot start: another run holds
// the journal, the cipherdir cannot be walked, a named file does not exist.
StatusOr<RekeySummary> RekeyVolume(Volume* volume, const RekeyOptions& options);

}  // namespace envelope::fs

#endif  // ENVELOPE_FS_REKEY_H_
