// The FUSE front end: libfuse's low-level API over a Volume. The only file
// set that includes fuse_lowlevel.h: fs/fuse_*.cc, one file per group of
// operations, sharing fs/fuse_fs_internal.h (which lists them). Callbacks
// stay thin: they translate FUSE requests into backing-file operations
// with encrypted names and hand file content to format::ContentFile; every
// error is a Status turned into an errno by ToErrno() at the reply.
#ifndef ENVELOPE_FS_FUSE_FS_H_
#define ENVELOPE_FS_FUSE_FS_H_

#include <string>
#include <vector>

#include "core/base/status.h"
#include "fs/volume.h"

namespace envelope::fs {

struct MountOptions {
  std::string mountpoint;
  bool foreground = false;
  bool debug = false;
  // Options for the kernel and libfuse (allow_other, ro, ...), comma-joined
  // pieces as given with -o, minus envelopefs's own.
  std::vector<std::string> fuse_options;
  double attr_timeout_seconds = 1.0;
  unsigned max_threads = 16;
  // -o sharedstorage: other mounts (other hosts) change the same cipherdir
  // at the same time (docs/SHARED_STORAGE.md). Timeouts 0 (whatever
  // attr_timeout_seconds says), no kernel data cache, per-request backing
  // file locks, hard links refused.
  bool shared_storage = false;
  // -o writeback_cache: the kernel keeps written data in its page cache and
  // sends it in large WRITEs later (close, fsync, memory pressure); it owns
  // a cached file's size, mtime and ctime. Write errors such as ENOSPC then
  // reach the writer at fsync(2) or close(2). Never with shared_storage.
  bool writeback_cache = false;
};

// Mounts `volume` and serves requests until unmounted. In the background
// unless options.foreground; returns once the mount is gone. `ready` is
// called after the mount is in place (before daemonizing).
Status MountAndServe(Volume* volume, const MountOptions& options);

}  // namespace envelope::fs

#endif  // ENVELOPE_FS_FUSE_FS_H_
