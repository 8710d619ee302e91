// A directory and files in it that only the effective user can reach, for
// things that must not be planted or read by another local user (the
// fallback log of a mount, which holds plaintext paths).
//
// The checks are ssh's StrictModes, applied without following symlinks:
// the directory is a real directory owned by us with no group or other
// permission bits; its parent and every directory above it pass
// CheckDirectoriesAbove (core/base/path_trust.h: owned by root or by us
// and, if others can write them, sticky as /tmp is), so nobody else can
// rename our directory away or put another in its place.
#ifndef ENVELOPE_CORE_BASE_PRIVATE_DIR_H_
#define ENVELOPE_CORE_BASE_PRIVATE_DIR_H_

#include <string>

#include "core/base/fd_io.h"
#include "core/base/status.h"

namespace envelope {

// Opens `path` (absolute), creating it with mode 0700 if it does not exist.
// PermissionDenied, naming what is wrong, if it or its parent fails the
// checks above: a symlink, not a directory, another owner, a group or other
// bit, or a directory above it another user could replace it in.
StatusOr<UniqueFd> OpenPrivateDirectory(const std::string& path);

// Opens `name` in the private directory `dirfd` for appending, creating it
// with mode 0600 (O_NOFOLLOW: a symlink is refused, never followed).
// PermissionDenied if it is not a regular file of ours with mode 0600 or
// has other links.
StatusOr<UniqueFd> OpenPrivateFileForAppend(int dirfd, const std::string& name);

}  // namespace envelope

#endif  // ENVELOPE_CORE_BASE_PRIVATE_DIR_H_
