// Sharing one file through a grant (docs/SHARING.md): `envelopefs share`
// finds a file's DEK context and master key, and a grant constrained to
// exactly that context lets another principal unwrap that DEK and no
// other; `envelopefs cat` is the other principal's reader, which needs the
// file's DEK only, never the volume key (so it sees no names, no other
// file, no xattrs).
#ifndef ENVELOPE_FS_SHARE_H_
#define ENVELOPE_FS_SHARE_H_

#include <string>

#include "core/base/status.h"
#include "fs/volume.h"
#include "kms/key_service.h"

namespace envelope::fs {

struct SharedFile {
  std::string plaintext_path;  // "/docs/a.txt"
  std::string backing_path;    // relative to the cipherdir
  std::string key_arn;         // the master key its DEK is wrapped under
  kms::EncryptionContextMap context;  // its DEK's encryption context
};

// The regular file `plaintext_path` ("/docs/a.txt" or "docs/a.txt") of
// `volume`, after checking that its DEK unwraps (the caller could read it).
// NotFound if there is no such regular file.
StatusOr<SharedFile> FindSharedFile(Volume& volume, const std::string& plaintext_path);

// Writes the plaintext of the backing file `backing_file` to `out_fd`. The
// volume is found by walking up from the file to the first directory with
// an envelopefs.conf, whose volume id, chunk size and DEK location are read
// but cannot be verified (that needs the volume key): they only say how
// to ask, and the answers are authenticated. The DEK is unwrapped pinned
// to `key` under the file's context (the key service authenticates both),
// and every chunk is authenticated under it: a file or config changed by
// anyone else fails (Corruption), never reads as other plaintext.
Status CatFile(const std::string& backing_file, const std::string& key, kms::KeyService* kms,
               int out_fd);

}  // namespace envelope::fs

#endif  // ENVELOPE_FS_SHARE_H_
