// The rotation journal: how `envelopefs rotate` stays resumable and
// idempotent when the key service's blobs are opaque (AWS KMS, or any
// service spoken to with the standard API: docs/ROTATION.md, "Opaque
// blobs"). envelope-keyd's blobs say which key version wraps them, so a
// rotation over it needs no journal.
//
// The journal is `.envelopefs.rotation` in the cipherdir's top directory:
//
//   "envelopefs-rotation v1\n"
//   {"target": KEY ARN, "marker": CURRENT VERSION MARKER}\n
//   record*   (16 bytes each)
//
// A record is the first 16 bytes of SHA-256("envelopefs/v1/rotation" ||
// blob) for each blob a ReEncrypt to the target made in a run for that
// target and marker (kms::CurrentVersion::marker: it changes exactly when
// the key gets a new version). A file whose active blob has a recorded
// digest is under the target's current version and is skipped.
//
// No ordering with the data is needed: a record names the *new* blob, so if
// the slot write it stands for was lost in a crash, the file still carries
// the old blob, whose digest is not recorded, and is re-wrapped again.
// Tampering can only make a rotation skip a file (it then stays under the
// version it was under); the file is ours, 0600, refused if anybody else
// owns it or may write it.
//
// Thread safety: Contains and Add are thread-safe.
#ifndef ENVELOPE_FS_ROTATION_JOURNAL_H_
#define ENVELOPE_FS_ROTATION_JOURNAL_H_

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "core/base/coding.h"
#include "core/base/fd_io.h"
#include "core/base/status.h"

namespace envelope::fs {

class RotationJournal {
 public:
  // The journal in the directory `root_dirfd` for (`target_arn`, `marker`):
  // the existing one if it was written for the same pair, else a new empty
  // one that replaces it. An empty marker (the service cannot say which
  // version is current) always starts afresh: nothing can be skipped.
  static StatusOr<std::unique_ptr<RotationJournal>> Open(int root_dirfd,
                                                         const std::string& target_arn,
                                                         const std::string& marker);

  // Whether `blob` was made by this rotation (this run or an earlier run for
  // the same target and marker).
  bool Contains(ByteView blob) const;
  // Records `blob`. Best effort: a journal that cannot be written (or has
  // reached its size bound) costs only resumability, so a failure is
  // returned for logging but the rotation goes on.
  Status Add(ByteView blob);
  // Records found when the journal was opened.
  size_t resumed() const { return resumed_; }

 private:
  using Digest = std::array<uint8_t, 16>;
  static Digest DigestOf(ByteView blob);

  RotationJournal(UniqueFd fd, uint64_t end, std::set<Digest> digests);

  // 4 Mi records: a volume of 4 million files.
  static constexpr uint64_t kMaxJournalInBytes = uint64_t{64} << 20;

  mutable std::mutex mu_;  // guards the three below
  UniqueFd fd_;
  uint64_t end_;
  std::set<Digest> digests_;
  size_t resumed_ = 0;
};

}  // namespace envelope::fs

#endif  // ENVELOPE_FS_ROTATION_JOURNAL_H_
