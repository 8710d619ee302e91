// Can anyone but us or root change a path, or put something else in its
// place? ssh's StrictModes rule, applied without following symlinks, for
// everything whose trust rests on who could have written it: an unpinned
// volume config (fs/volume.cc), the directory of the key service socket
// (kms/endpoint.cc, both client and daemon), the directory of a mount's
// fallback log (core/base/private_dir.h).
//
// Why every directory up to "/": whoever can write a directory can rename
// or remove any entry in it and put their own in its place, so a path is
// only as safe as its least safe ancestor. A directory others can write is
// still safe above the path if it has the sticky bit (like /tmp): then
// only an entry's owner, the directory's owner and root can rename or
// remove it. The path itself gets no such exception: in a sticky directory
// others can still add entries (a socket, a file) next to ours.
//
// The checks read the file system as it is now (lstat, never following a
// symlink); what passes can then be changed only by `self` and root.
#ifndef ENVELOPE_CORE_BASE_PATH_TRUST_H_
#define ENVELOPE_CORE_BASE_PATH_TRUST_H_

#include <sys/types.h>

#include <string>

#include "core/base/status.h"

namespace envelope {

enum class PathKind { kRegularFile, kDirectory };

// OK if nobody but `self` and root can change `absolute_path` or replace it:
// - the path is of kind `leaf_kind` (a symlink is refused, never followed),
//   owned by `self` or root, and not writable by group or others (sticky or
//   not);
// - every directory above it passes CheckDirectoriesAbove.
// InvalidArgument if the path is not absolute or has a "." or ".."
// component (repeated and trailing slashes are ignored).
// FailedPrecondition naming the first path that fails (the path itself
// first, then upwards to "/"), what is wrong, its uid and mode.
// IoError with the errno if a component cannot be examined (e.g. it does
// not exist, or a directory above it cannot be searched).
Status CheckNotReplaceable(const std::string& absolute_path, uid_t self, PathKind leaf_kind);

// The same walk for the directories above `absolute_path` only (its
// parent, up to and including "/"): each a directory, not a symlink, owned
// by `self` or root, and not writable by group or others unless it has the
// sticky bit. For a caller about to create the path, or that checks the
// path itself through a file descriptor it opened (OpenPrivateDirectory).
// Errors as for CheckNotReplaceable; "/" itself has no directories above.
Status CheckDirectoriesAbove(const std::string& absolute_path, uid_t self);

}  // namespace envelope

#endif  // ENVELOPE_CORE_BASE_PATH_TRUST_H_
