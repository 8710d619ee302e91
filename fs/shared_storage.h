// -o sharedstorage (docs/SHARED_STORAGE.md): what a mount does differently
// when other mounts (another host over NFS, another envelopefs process) may
// change the same cipherdir at the same time.
//
// Without the option a mount assumes it alone changes the cipherdir, and a
// file's content state (format::ContentFile: the backing size whose final
// chunk it authenticated, whether the header allows holes) is what its own
// requests left. With it, every request on a file's content
//   1. locks the backing file against the other mounts' requests: an open
//      file description lock (fcntl F_OFD_SETLK) over the whole file, shared
//      for reads, exclusive for changes, so that no request of one mount
//      sees a change of another half done;
//   2. compares the backing file's size, mtime and ctime with what this
//      mount left: if another mount (or anyone) changed the file since, the
//      content state is made again from the header and the final chunk
//      (Volume::OpenContent: the DEK cache, no key service round trip while
//      the DEK is cached), which re-authenticates the size and re-reads the
//      version (holes);
//   3. after a Corruption, makes the content state again and tries once
//      more (a header change the timestamps missed: a backing filesystem
//      whose timestamps are coarser than the two changes were apart).
// The locks are advisory: only envelopefs mounts of the volume take them.
//
// Thread safety: stateless functions. The Inode functions REQUIRE
// inode->mu held exclusively (in this mode every content request takes it
// so: one request per file and mount at a time, which is also what makes
// one lock per open file description enough).
#ifndef ENVELOPE_FS_SHARED_STORAGE_H_
#define ENVELOPE_FS_SHARED_STORAGE_H_

#include <sys/stat.h>
#include <time.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "core/base/fd_io.h"
#include "core/base/status.h"
#include "core/format/content_file.h"

namespace envelope::fs {

class Volume;
struct Inode;

namespace shared {

// How long a request waits for another holder's lock before it fails with
// EIO (and a log line). Another mount holds one for a single request
// (at most 1 MiB of chunks, or one fdatasync when a file first gets a
// hole), so only a stuck or hostile holder waits this long; the bound
// keeps one from hanging the mount's threads forever.
inline constexpr std::chrono::seconds kLockWait{10};
// How long an open waits for an empty backing file to get its header: the
// other mount makes a file (the name appears) and then writes its header
// in one pwrite while holding the exclusive lock. An empty file still
// empty after this is a crash leftover, which fails to open (EIO) as
// without the mode.
inline constexpr std::chrono::seconds kHeaderWait{2};

enum class LockKind { kShared, kExclusive };

// A whole-file open file description lock on a backing file, held until
// destruction. Move-only. OFD locks, not POSIX ones: closing another
// descriptor of the same file (a create's spare descriptor) keeps it.
class BackingLock {
 public:
  // Waits at most kLockWait. REQUIRES: `fd` open for reading (kShared) or
  // for writing (kExclusive), and open until the lock is destroyed.
  static StatusOr<BackingLock> Acquire(int fd, LockKind kind);
  BackingLock(BackingLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  BackingLock& operator=(BackingLock&& other) noexcept;
  BackingLock(const BackingLock&) = delete;
  BackingLock& operator=(const BackingLock&) = delete;
  ~BackingLock();

 private:
  explicit BackingLock(int fd) : fd_(fd) {}
  void Release();
  int fd_ = -1;  // not owned
};

// Whether the filesystem of the regular file `fd` (open for reading) takes
// OFD locks; the mount refuses this mode where it does not (an NFS mount
// with `nolock`).
Status CheckLocksWork(int fd);

// What a mount last saw of a backing file: a change by anyone changes the
// size or the modification and change times (to the resolution of the
// backing filesystem's timestamps).
struct BackingStamp {
  bool valid = false;
  off_t size = 0;
  struct timespec mtime {};
  struct timespec ctime {};

  static BackingStamp Of(const struct stat& st);
  bool operator==(const BackingStamp& other) const;
};

// Opens the content of the existing backing file `fd` with its lock held
// shared, after waiting (kHeaderWait) for an empty file to get its header;
// sets *seen.
StatusOr<std::unique_ptr<format::ContentFile>> OpenContent(Volume* volume, int fd,
                                                           BackingStamp* seen);
// Gives the empty backing file `fd`, just created (O_EXCL) by this mount, its
// header and key with its lock held exclusively; sets *seen.
StatusOr<std::unique_ptr<format::ContentFile>> CreateContent(Volume* volume, int fd,
                                                             BackingStamp* seen);

// Runs `op`, which works on inode->content, with the backing file locked
// (`kind`) and the content state re-validated (steps 2 and 3 above); `op`
// may run twice, and must look inode->content up each time.
// REQUIRES: inode->mu held exclusively, inode->content set.
Status WithContent(Volume* volume, Inode* inode, LockKind kind, const std::function<Status()>& op);

// fstat of the open backing file `fd` with its lock held shared: a size
// some other mount's request has half written is never shown.
Status StatLocked(int fd, struct stat* st);

// The long-target file of a symlink goes with the symlink's last link
// (docs/FORMAT.md §8.3). Between this mount's look at a name and its unlink
// (or rename over it), another mount may rename that symlink away and put
// something else under the name; then what this mount removed is that
// other object, and the symlink, still linked elsewhere, must keep its
// target file. So the symlink is held (O_PATH) across the removal, and its
// target dropped only if the removal took its last link.
class LastLink {
 public:
  // Before removing `name` in `dirfd`, whose lstat was `st`: holds the
  // symlink there if it has one link.
  static LastLink Before(int dirfd, const std::string& name, const struct stat& st);
  // After the removal: its raw backing target if the held symlink has no
  // link left, else "".
  std::string TargetToDrop() const;

 private:
  UniqueFd link_;
  std::string raw_target_;
};

}  // namespace shared
}  // namespace envelope::fs

#endif  // ENVELOPE_FS_SHARED_STORAGE_H_
