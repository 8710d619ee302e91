// envelopefs rotate: re-wraps every file key of a volume, and the volume
// key, under the current version of its master key (or of another key),
// with ReEncrypt. Only DEK slots (or DEK xattrs) and the config are written,
// never a chunk, so the cost follows the number of files, not their bytes
// (docs/ROTATION.md).
//
// Resumable and idempotent: a file already under the target's current
// version is skipped, so a rerun after a crash does only what is left.
// Over envelope-keyd each blob says which key version wraps it
// (KeyService::VersionOf); over a service with opaque blobs (AWS KMS) the
// rotation journal remembers the blobs this rotation made
// (fs/rotation_journal.h).
// Crash-safe per file: format::RewriteWrappedDek writes only the inactive
// slot. Durable at the end, without syncing anyone else's writes where the
// filesystem allows (ext4, XFS): each slot's writeback is started as it is
// written and waited for a batch later, then one fsync of the cipherdir
// commits and flushes; elsewhere one syncfs. A marker file tells the next
// run that this one stopped before that point (it then syncs first).
//
// Per file: open, fstat, one header pread, a 512-byte pwrite, futimens;
// the re-wraps go to the key service 64 files at a time
// (KeyService::ReEncryptMany: one request with envelope-keyd).
#ifndef ENVELOPE_FS_ROTATE_H_
#define ENVELOPE_FS_ROTATE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/base/status.h"
#include "fs/volume.h"

namespace envelope::fs {

struct RotateOptions {
  std::string to_key;  // empty: the volume's own key
  int threads = 8;
  // Files a worker takes at a time: their re-wraps go to the key service in
  // one ReEncryptMany (one request with envelope-keyd), and their
  // descriptors stay open until their slot writes are on the device (this
  // batch and the one before it: 2 x files_per_batch per worker).
  size_t files_per_batch = 64;
  bool progress = false;  // draw a progress bar on stderr
};

struct RotateSummary {
  std::string key_arn;          // the target key
  uint32_t key_version = 0;     // its current version when the run started (0: not numbered)
  std::string version_marker;   // kms::CurrentVersion::marker of that version
  uint64_t journal_resumed = 0; // opaque blobs: re-wraps an earlier run recorded
  bool volume_key_rewrapped = false;
  // Seconds spent waiting, before the walk, until a running mount could no
  // longer create files under the old key version (0 offline).
  double mount_wait_seconds = 0;
  uint64_t files = 0;            // regular files seen
  uint64_t rewrapped = 0;        // re-wrapped by this run
  uint64_t already_current = 0;  // skipped: already under the target
  uint64_t skipped_empty = 0;    // empty backing files (a create in flight)
  uint64_t bytes_written = 0;    // header slots / xattr values written
  double seconds = 0;  // the whole run, the mount wait excluded
  double walk_seconds = 0;  // of which listing the cipherdir
  double sync_seconds = 0;  // of which the final sync
  // How the writes were made durable: "per-file writeback, one fsync" or
  // "syncfs" (docs/ROTATION.md, "Durability").
  std::string durability;
  // "KEYID:VERSION" ("unknown" for an opaque blob) -> number of files this
  // run moved away from it.
  std::map<std::string, uint64_t> from_versions;
  // Files that could not be re-wrapped: "PATH: reason".
  std::vector<std::string> failures;
  // Things worth telling that are not failures.
  std::vector<std::string> notes;
};

// Fails (without a summary) only when the run cannot go on at all: the
// target key cannot be described, the volume key cannot be re-wrapped, or
// the key service stops answering. Per-file trouble lands in `failures`.
StatusOr<RotateSummary> RotateVolume(Volume* volume, const RotateOptions& options);

}  // namespace envelope::fs

#endif  // ENVELOPE_FS_ROTATE_H_
