#include "fs/shared_storage.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include <spdlog/spdlog.h>

#include "core/format/name_codec.h"
#include "fs/backing_tree.h"
#include "fs/inode_table.h"
#include "fs/volume.h"

namespace envelope::fs::shared {

namespace {

using Clock = std::chrono::steady_clock;

// The first retry comes soon (another mount's request takes microseconds
// to milliseconds), later ones back off so that a long wait costs no CPU.
constexpr std::chrono::microseconds kFirstBackoff{50};
constexpr std::chrono::microseconds kMaxBackoff{10000};

struct flock WholeFile(short type) {
  struct flock fl;
  std::memset(&fl, 0, sizeof(fl));
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 0;  // to the end, whatever the size becomes
  return fl;
}

// One F_OFD_SETLK attempt: true if taken, false if someone else holds a
// conflicting lock, an error otherwise.
StatusOr<bool> TryLock(int fd, short type) {
  struct flock fl = WholeFile(type);
  for (;;) {
    if (::fcntl(fd, F_OFD_SETLK, &fl) == 0) return true;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EACCES) return false;
    return Status::FromErrno("lock backing file");
  }
}

void Unlock(int fd) {
  struct flock fl = WholeFile(F_UNLCK);
  while (::fcntl(fd, F_OFD_SETLK, &fl) != 0 && errno == EINTR) {
  }
}

}  // namespace

StatusOr<BackingLock> BackingLock::Acquire(int fd, LockKind kind) {
  const short type = kind == LockKind::kShared ? F_RDLCK : F_WRLCK;
  const Clock::time_point deadline = Clock::now() + kLockWait;
  std::chrono::microseconds backoff = kFirstBackoff;
  for (;;) {
    ENVELOPE_ASSIGN_OR_RETURN(bool taken, TryLock(fd, type));
    if (taken) return BackingLock(fd);
    if (Clock::now() >= deadline) {
      // Logged here, whichever request waited: a stuck or hostile holder is
      // worth a line even where the request's own error is not logged.
      Status s = Status::IoError("a backing file stayed locked by another process for " +
                                     std::to_string(kLockWait.count()) + " s",
                                 EIO);
      auto path = backing::DescriptorPath(fd);
      spdlog::error("sharedstorage: {}: {}", path.ok() ? *path : "?", s.ToString());
      return s;
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

BackingLock& BackingLock::operator=(BackingLock&& other) noexcept {
  if (this != &other) {
    Release();
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

BackingLock::~BackingLock() { Release(); }

void BackingLock::Release() {
  if (fd_ < 0) return;
  Unlock(fd_);
  fd_ = -1;
}

Status CheckLocksWork(int fd) {
  auto taken = TryLock(fd, F_RDLCK);
  if (!taken.ok()) {
    return Status::FailedPrecondition(
        "-o sharedstorage needs file locks, and the cipherdir's filesystem refuses them (" +
        taken.status().ToString() + ")");
  }
  if (*taken) Unlock(fd);
  return Status::Ok();
}

BackingStamp BackingStamp::Of(const struct stat& st) {
  BackingStamp b;
  b.valid = true;
  b.size = st.st_size;
  b.mtime = st.st_mtim;
  b.ctime = st.st_ctim;
  return b;
}

bool BackingStamp::operator==(const BackingStamp& o) const {
  return valid && o.valid && size == o.size && mtime.tv_sec == o.mtime.tv_sec &&
         mtime.tv_nsec == o.mtime.tv_nsec && ctime.tv_sec == o.ctime.tv_sec &&
         ctime.tv_nsec == o.ctime.tv_nsec;
}

namespace {

// What `fd` is now, for the next request's comparison; invalid if fstat
// fails (then the next request makes the content state again).
BackingStamp StampNow(int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return BackingStamp{};
  return BackingStamp::Of(st);
}

// Waits (without the lock) until the backing file `fd` is no longer
// empty, at most kHeaderWait.
void WaitForHeader(int fd) {
  const Clock::time_point deadline = Clock::now() + kHeaderWait;
  std::chrono::microseconds backoff = kFirstBackoff;
  struct stat st;
  while (::fstat(fd, &st) == 0 && st.st_size == 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

// Makes inode->content again from the header and final chunk as they are
// now. REQUIRES: inode->mu held exclusively, the backing lock held.
Status Reopen(Volume* volume, Inode* inode) {
  auto content = volume->OpenContent(inode->content_fd);
  if (!content.ok()) return content.status();
  inode->content = std::move(*content);
  return Status::Ok();
}

}  // namespace

StatusOr<std::unique_ptr<format::ContentFile>> OpenContent(Volume* volume, int fd,
                                                           BackingStamp* seen) {
  WaitForHeader(fd);
  ENVELOPE_ASSIGN_OR_RETURN(BackingLock lock, BackingLock::Acquire(fd, LockKind::kShared));
  auto content = volume->OpenContent(fd);
  if (content.ok()) *seen = StampNow(fd);
  return content;
}

StatusOr<std::unique_ptr<format::ContentFile>> CreateContent(Volume* volume, int fd,
                                                             BackingStamp* seen) {
  ENVELOPE_ASSIGN_OR_RETURN(BackingLock lock, BackingLock::Acquire(fd, LockKind::kExclusive));
  auto content = volume->CreateContent(fd);
  if (content.ok()) *seen = StampNow(fd);
  return content;
}

Status WithContent(Volume* volume, Inode* inode, LockKind kind, const std::function<Status()>& op) {
  ENVELOPE_ASSIGN_OR_RETURN(BackingLock lock, BackingLock::Acquire(inode->content_fd, kind));
  if (!(StampNow(inode->content_fd) == inode->seen)) {
    // Changed since this mount last left it: the size this mount
    // authenticated, and the header version, may be stale.
    Status s = Reopen(volume, inode);
    if (s.code() == StatusCode::kCorruption) return s;  // as it is now, it does not open
    if (!s.ok()) {
      // The key service, for a DEK that has left the cache: the state made
      // earlier keeps its cipher, which is the file's own (a file's DEK
      // never changes), and every chunk it reads is still authenticated.
      spdlog::warn(
          "sharedstorage: cannot re-open a file another mount changed, reading on with its "
          "earlier state: {}",
          s.ToString());
    }
  }
  Status s = op();
  if (s.code() == StatusCode::kCorruption && Reopen(volume, inode).ok()) s = op();
  inode->seen = StampNow(inode->content_fd);
  return s;
}

Status StatLocked(int fd, struct stat* st) {
  ENVELOPE_ASSIGN_OR_RETURN(BackingLock lock, BackingLock::Acquire(fd, LockKind::kShared));
  return backing::Stat(fd, "", st);
}

LastLink LastLink::Before(int dirfd, const std::string& name, const struct stat& st) {
  LastLink l;
  if (!S_ISLNK(st.st_mode) || st.st_nlink != 1) return l;
  auto link = backing::OpenObject(dirfd, name, st.st_dev, st.st_ino);
  if (!link.ok()) return l;
  auto raw = backing::ReadLink(dirfd, name, format::kMaxInlineTargetInBytes);
  // The target read must be the held symlink's: the name still leads to it.
  struct stat again;
  if (!raw.ok() || !backing::Stat(dirfd, name, &again).ok() || again.st_dev != st.st_dev ||
      again.st_ino != st.st_ino) {
    return l;
  }
  l.link_ = std::move(*link);
  l.raw_target_ = std::move(*raw);
  return l;
}

std::string LastLink::TargetToDrop() const {
  if (!link_.valid()) return "";
  struct stat st;
  Status s = backing::Stat(link_.get(), "", &st);
  if (s.ok()) return st.st_nlink == 0 ? raw_target_ : "";
  // A backing filesystem that forgets an object at its last unlink (NFS
  // answers ESTALE for it): it is gone.
  return ToErrno(s) == ESTALE ? raw_target_ : "";
}

}  // namespace envelope::fs::shared
