// The one place that makes system calls on backing paths: every open,
// create, stat, chmod, chown, rename and unlink under the cipherdir.
//
// Under `allow_other` the users of a volume own backing objects inside it
// (a backing object carries its plaintext owner and mode), so anything a
// name resolves to may have been planted: a symlink to /etc/shadow, a FIFO
// where a side file should be, a directory swapped in by RENAME_EXCHANGE.
// Hence the rules every function here keeps:
//
// * A name is one component (no '/', not "." or ".."), resolved in a
//   directory descriptor that was itself opened without following a
//   symlink. A path of several components (the volume walk, rotate, fsck)
//   is resolved with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS): never
//   above the cipherdir, never through a symlink.
// * No call follows a symlink: O_NOFOLLOW, AT_SYMLINK_NOFOLLOW, and mode and
//   owner changes through an O_PATH | O_NOFOLLOW descriptor of the object
//   the caller expects (checked by dev and inode number).
// * Files are opened with O_NONBLOCK and checked to be regular before they
//   are used, so a planted FIFO or device answers with an error, never a
//   hang; a file created with O_CREAT | O_EXCL is a new regular file by
//   construction and needs neither. Small side files are read only up to a
//   bound.
// * Files we create are created exclusively (O_EXCL); a side file that may
//   replace an older one is written at a random temporary name and renamed
//   into place, so no predictable name is ever opened for writing.
// * A new directory is opened without following and checked to be the one
//   just made (ours, mode 0700, empty) before it is given an id or a mode.
//
// No FUSE here: the mount, the volume walk, rotate and fsck all use it.
// Thread safety: stateless functions; thread-safe.
#ifndef ENVELOPE_FS_BACKING_TREE_H_
#define ENVELOPE_FS_BACKING_TREE_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include "core/base/coding.h"
#include "core/base/fd_io.h"
#include "core/base/status.h"

namespace envelope::fs::backing {

// ---- descriptors ----------------------------------------------------------

// The cipherdir itself (O_PATH). Its path comes from the administrator and
// is trusted; nothing below it is.
StatusOr<UniqueFd> OpenRoot(const std::string& cipherdir);

// The directory at `path` (relative, "/"-separated, "." for the root)
// beneath `root_fd`, readable, resolved without symlinks and never above
// `root_fd`.
StatusOr<UniqueFd> OpenDirBeneath(int root_fd, const std::string& path);
// The regular file at `path` beneath `root_fd`, opened with `access`
// (O_RDONLY or O_RDWR), resolved the same way. Anything but a regular file
// is refused.
StatusOr<UniqueFd> OpenFileBeneath(int root_fd, const std::string& path, int access);

// The subdirectory `name` of `dirfd` as an O_PATH descriptor.
StatusOr<UniqueFd> OpenSubdirPath(int dirfd, const std::string& name);
// The directory `name` of `dirfd` for reading; "" reopens `dirfd` itself.
StatusOr<UniqueFd> OpenDir(int dirfd, const std::string& name);
// The regular file `name` of `dirfd` with `access` (O_RDONLY, O_RDWR).
StatusOr<UniqueFd> OpenRegular(int dirfd, const std::string& name, int access);

// The object `name` of `dirfd` ("" = `dirfd` itself) as an O_PATH descriptor,
// refused (ESTALE) unless it is the object (dev, ino): what setattr acts on.
StatusOr<UniqueFd> OpenObject(int dirfd, const std::string& name, dev_t dev, ino_t ino);

// The path a descriptor was opened at, for log lines only.
StatusOr<std::string> DescriptorPath(int fd);

// ---- attributes -----------------------------------------------------------

// lstat of `name` in `dirfd`; "" stats `dirfd` itself.
Status Stat(int dirfd, const std::string& name, struct stat* st);
// stat of the parent of the directory `dirfd` (its "..").
Status StatParent(int dirfd, struct stat* st);
// chmod of the object behind the O_PATH descriptor `objfd`; a symlink has
// no mode of its own (EOPNOTSUPP).
Status Chmod(int objfd, mode_t mode);
// What a write, truncate or chown does to a regular file's setuid and
// setgid bits, as the kernel's setattr_should_drop_suidgid() decides for
// ext4: S_ISUID goes; S_ISGID goes if the file is group-executable, or if
// `caller_in_group(file's gid)` says the caller is neither in the file's
// group nor privileged (CAP_FSETID). Nothing if neither bit is set (one
// fstat; `caller_in_group` is asked only for a setgid file that is not
// group-executable). Returns whether the mode changed.
StatusOr<bool> DropSetIds(int objfd, const std::function<bool(gid_t)>& caller_in_group);
// chown of the object behind `objfd` itself (a symlink, not its target).
Status Chown(int objfd, uid_t uid, gid_t gid);
// utimensat of the object behind `objfd` itself.
Status SetTimes(int objfd, const struct timespec times[2]);
// faccessat of `name` in `dirfd` ("" = `dirfd`) with the effective ids.
Status Access(int dirfd, const std::string& name, int mask);

// Extended attributes of the object (dev, ino) that `name` in `dirfd` ("" =
// `dirfd` itself) is, never through a symlink. The name is opened O_PATH
// and checked to be that object first (ESTALE otherwise, as OpenObject),
// and the call acts on that descriptor: a backing name swapped between the
// lookup and the call cannot carry one user's value to another's object.
// Return the size, as the system calls do.
StatusOr<size_t> GetXattr(int dirfd, const std::string& name, dev_t dev, ino_t ino,
                          const std::string& key, MutableByteView out);
Status SetXattr(int dirfd, const std::string& name, dev_t dev, ino_t ino, const std::string& key,
                ByteView value, int flags);
StatusOr<size_t> ListXattr(int dirfd, const std::string& name, dev_t dev, ino_t ino, char* out,
                           size_t size);
Status RemoveXattr(int dirfd, const std::string& name, dev_t dev, ino_t ino,
                   const std::string& key);

// ---- creating and removing names ------------------------------------------

// Creates the regular file `name` (O_CREAT | O_NOFOLLOW, plus O_EXCL if
// `exclusive`) and opens it O_RDWR; an existing name must be a regular file
// (checked without `exclusive`; with it, any existing name is EEXIST).
StatusOr<UniqueFd> CreateRegular(int dirfd, const std::string& name, mode_t mode, bool exclusive);
Status MakeNode(int dirfd, const std::string& name, mode_t mode, dev_t rdev);
Status MakeSymlink(const std::string& target, int dirfd, const std::string& name);
// The raw target of the symlink `name`; longer than `max` bytes is an error.
StatusOr<std::string> ReadLink(int dirfd, const std::string& name, size_t max);
Status Link(int from_dirfd, const std::string& from, int to_dirfd, const std::string& to);
Status Unlink(int dirfd, const std::string& name);
Status Rename(int from_dirfd, const std::string& from, int to_dirfd, const std::string& to,
              unsigned int flags);

// mkdir of `name`, private (0700), then OpenCreatedDirectory.
StatusOr<UniqueFd> MakeDirectory(int dirfd, const std::string& name);
// Opens the directory `name` just made by mkdir(name, 0700) and checks that
// it is that directory: owned by us, mode 0700, empty. A name swapped by
// RENAME_EXCHANGE for a symlink or some other directory is refused, so the
// caller's fchmod, fchown and dir-id file reach only the directory it made.
StatusOr<UniqueFd> OpenCreatedDirectory(int dirfd, const std::string& name);

// A backing directory is empty to the user when only `ignore` (its dir-id
// file) is left in it. `dirfd` is a readable descriptor of it.
StatusOr<bool> DirectoryIsEmpty(int dirfd, std::string_view ignore);

// The dir-id file of the subdirectory `name`, moved aside so that the
// directory can be removed (rmdir, a rename over it) and put back if that
// fails. Everything goes through a descriptor of the subdirectory opened
// without following a symlink.
struct DirIdAside {
  UniqueFd dir;   // the subdirectory
  Bytes content;  // the dir-id file's bytes, empty if it had none
  bool removed = false;
};
// Fails with ENOTEMPTY unless the subdirectory is empty to the user: only
// its dir-id file and stale `.envelopefs.tmp.*` side-file temporaries (a
// crash between writing and renaming) are left, the latter regular files
// of our euid, which are then removed (docs/FORMAT.md §8.2).
StatusOr<DirIdAside> SetDirIdAside(int dirfd, const std::string& name, std::string_view id_name,
                                   size_t id_size);
void RestoreDirId(const DirIdAside& aside, std::string_view id_name);
// rmdir of `name`, refused if it no longer is the directory `aside.dir`.
Status RemoveDirectory(int dirfd, const std::string& name, const DirIdAside& aside);

// ---- small side files (dir ids, long names, long symlink targets) ---------

// Reads the regular file `name` whole; it must be at most `max` bytes. A
// symlink, FIFO, device or directory there is an error (EIO), at once.
StatusOr<Bytes> ReadSmallFile(int dirfd, const std::string& name, size_t max);
// Creates `name` with O_EXCL and writes `data` (a planted name of any kind
// makes this fail). If `owner` is not -1 the file is given to it first;
// with `sync` it is fsynced before this returns.
Status CreateSmallFile(int dirfd, const std::string& name, ByteView data, mode_t mode,
                       uid_t owner = static_cast<uid_t>(-1), gid_t group = static_cast<gid_t>(-1),
                       bool sync = false);
// Writes `data` to a new file at a random temporary name (O_EXCL), then
// renames it over `name`: a symlink planted at `name` is replaced, never
// followed. With `sync` the file is fsynced before the rename and the
// directory after it (the volume config: the rename is the commit).
Status ReplaceSmallFile(int dirfd, const std::string& name, ByteView data, mode_t mode,
                        bool sync = false);

// The directory `name` of `root_fd` that only we may write (the store of
// long symlink targets), created 0700 if `create`. Refused if it is not
// ours or others may write to it.
StatusOr<UniqueFd> OpenPrivateDir(int root_fd, const std::string& name, bool create);

}  // namespace envelope::fs::backing

#endif  // ENVELOPE_FS_BACKING_TREE_H_
