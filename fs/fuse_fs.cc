#define FUSE_USE_VERSION 314
#include "fs/fuse_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "core/base/fd_io.h"
#include "core/format/header_io.h"
#include "fs/inode_table.h"

namespace envelope::fs {

namespace {

using format::BackingNameKind;
using format::DirId;
using format::NameCodec;

constexpr std::string_view kUserXattrPrefix = "user.";

std::string ProcPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

Status Errno(const char* what) { return Status::FromErrno(what); }

// A directory handle: the decoded listing, made at opendir.
struct DirEntry {
  std::string name;
  std::string backing;  // the backing name, so readdirplus need not re-encrypt
  ino_t ino;
  mode_t type;
};
struct DirHandle {
  std::vector<DirEntry> entries;
};

class EnvelopeFs {
 public:
  EnvelopeFs(Volume* volume, int root_fd, double timeout)
      : volume_(volume), inodes_(root_fd), timeout_(timeout) {}

  Volume* volume() { return volume_; }
  InodeTable& inodes() { return inodes_; }
  double timeout() const { return timeout_; }
  bool running_as_root() const { return running_as_root_; }

  StatusOr<DirId> DirIdOf(Inode* dir) {
    std::lock_guard lock(dir->mu);
    if (!dir->dir_id) {
      UniqueFd fd(::openat(dir->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!fd.valid()) return Errno("open directory");
      ENVELOPE_ASSIGN_OR_RETURN(DirId id, volume_->ReadDirId(fd.get()));
      dir->dir_id = id;
    }
    return *dir->dir_id;
  }

  // The backing name of `name` in `dir`, writing nothing.
  StatusOr<format::EncodedName> Encode(Inode* dir, const char* name) {
    ENVELOPE_ASSIGN_OR_RETURN(DirId id, DirIdOf(dir));
    return volume_->names().EncodeName(name, id);
  }

  // Writes the side file of a long name (before the entry itself exists).
  Status WriteLongNameFile(Inode* dir, const format::EncodedName& en) {
    if (en.long_name_content.empty()) return Status::Ok();
    std::string side = en.backing_name + std::string(format::kLongNameSuffix);
    UniqueFd fd(::openat(dir->fd, side.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0400));
    if (!fd.valid()) {
      // O_PATH parent fds do not allow openat for writing on every kernel;
      // go through /proc.
      std::string path = ProcPath(dir->fd) + "/" + side;
      fd = UniqueFd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0400));
      if (!fd.valid()) return Errno("create long-name file");
    }
    ENVELOPE_RETURN_IF_ERROR(PwriteFull(fd.get(), AsBytes(en.long_name_content), 0));
    return Status::Ok();
  }
  void RemoveLongNameFile(Inode* dir, const format::EncodedName& en) {
    if (en.long_name_content.empty()) return;
    std::string side = en.backing_name + std::string(format::kLongNameSuffix);
    ::unlinkat(dir->fd, side.c_str(), 0);
  }

  // stat of the backing object, translated to what the mount shows.
  Status Stat(Inode* inode, struct stat* st) {
    int rc;
    {
      // An open file answers from its descriptor: right even after its
      // name was unlinked or renamed elsewhere.
      std::lock_guard lock(inode->mu);
      if (inode->content_fd >= 0) {
        rc = ::fstat(inode->content_fd, st);
      } else {
        Where w = inode->where();
        if (!w.known()) return Status::NotFound("unlinked");
        rc = ::fstatat(w.dirfd, w.name.c_str(), st,
                       AT_SYMLINK_NOFOLLOW | (w.name.empty() ? AT_EMPTY_PATH : 0));
      }
    }
    if (rc != 0) return Errno("fstatat");
    ShowStat(inode, st);
    return Status::Ok();
  }

  // Turns a backing stat into what the mount shows: the plaintext size of a
  // file, the plaintext target length of a symlink.
  void ShowStat(Inode* inode, struct stat* st) {
    if (S_ISREG(st->st_mode)) {
      auto size = volume_->layout().PlaintextSize(static_cast<uint64_t>(st->st_size));
      // A file whose size no valid file has still stats (its reads fail).
      st->st_size = size.ok() ? static_cast<off_t>(*size) : 0;
    } else if (S_ISLNK(st->st_mode)) {
      auto target = ReadLink(inode);
      st->st_size = target.ok() ? static_cast<off_t>(target->size()) : 0;
    } else if (inode == inodes_.root() && st->st_nlink > 2) {
      // The store of long symlink targets is a subdirectory of the root
      // that readdir does not show; its ".." must not count either.
      struct stat store;
      if (::fstatat(inode->fd, std::string(format::kLongTargetDirName).c_str(), &store,
                    AT_SYMLINK_NOFOLLOW) == 0 &&
          S_ISDIR(store.st_mode)) {
        --st->st_nlink;
      }
    }
  }

  StatusOr<std::string> ReadLink(Inode* inode) {
    Where w = inode->where();
    if (!w.known()) return Status::NotFound("unlinked");
    return volume_->ReadSymlink(w.dirfd, w.name);
  }

  // The plaintext path of an inode for a log line ("/docs/a.txt"), or its
  // backing inode number if the path cannot be found.
  std::string PathForLog(Inode* inode) {
    const Where w = inode->where();
    char buf[PATH_MAX];
    ssize_t n = w.known() ? ::readlink(ProcPath(w.dirfd).c_str(), buf, sizeof(buf) - 1) : -1;
    const std::string& root = volume_->cipherdir();
    if (n > 0) {
      std::string dir(buf, static_cast<size_t>(n));
      if (dir == root || dir.rfind(root + "/", 0) == 0) {
        std::string rel = dir.substr(root.size());
        if (!w.name.empty()) rel += "/" + w.name;
        auto path = volume_->PlaintextPath(rel);
        if (path.ok()) return *path;
      }
    }
    return "backing inode " + std::to_string(inode->ino);
  }

  // Where the object is now; for a file whose every name is gone but which
  // is still open, its content descriptor (fchmod, fchown, futimens and
  // linkat of an open, unlinked file).
  Where Locate(Inode* inode) {
    Where w = inode->where();
    if (w.known()) return w;
    std::lock_guard lock(inode->mu);
    if (inode->content_fd >= 0) return Where{inode->content_fd, ""};
    return w;
  }

  // Looks up an entry by backing name and fills `e`.
  Status LookupBacking(Inode* parent, const std::string& backing, fuse_entry_param* e) {
    struct stat st;
    if (::fstatat(parent->fd, backing.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return Errno("lookup");
    }
    // A directory the kernel already knows keeps its descriptor; only a new
    // one is opened (fs_mark's mkdir of an existing directory, `cd`, path
    // walks after the entry timeout all look directories up again).
    Inode* inode = S_ISDIR(st.st_mode) ? inodes_.AddIfKnown(parent, backing, st) : nullptr;
    if (inode == nullptr) {
      int dir_fd = -1;
      if (S_ISDIR(st.st_mode)) {
        dir_fd = ::openat(parent->fd, backing.c_str(),
                          O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd < 0) return Errno("open directory");
        struct stat again;
        // The name may have been replaced between the two calls.
        if (::fstat(dir_fd, &again) != 0 || again.st_ino != st.st_ino) {
          ::close(dir_fd);
          return Status::IoError("directory changed during lookup", EAGAIN);
        }
      }
      inode = inodes_.Add(parent, backing, st, dir_fd);
    }
    std::memset(e, 0, sizeof(*e));
    e->ino = inode == inodes_.root() ? FUSE_ROOT_ID : reinterpret_cast<fuse_ino_t>(inode);
    e->attr_timeout = timeout_;
    e->entry_timeout = timeout_;
    // The stat just made is the object's: no second system call.
    e->attr = st;
    ShowStat(inode, &e->attr);
    return Status::Ok();
  }

  // Sets the owner of a new backing object to the caller when we are root
  // (a non-root daemon can only create files it owns).
  void ChownToCaller(fuse_req_t req, int dirfd, const std::string& name) {
    if (!running_as_root_) return;
    const fuse_ctx* ctx = fuse_req_ctx(req);
    // A new object is already ours; only a different caller needs a chown.
    if (ctx->uid == ::geteuid() && ctx->gid == ::getegid()) return;
    ::fchownat(dirfd, name.c_str(), ctx->uid, ctx->gid, AT_SYMLINK_NOFOLLOW);
  }

  // Opens the content of a regular file for I/O, once per inode.
  // REQUIRES: inode->mu held.
  Status EnsureContent(Inode* inode) {
    if (inode->content) return Status::Ok();
    Where w = inode->where();
    if (!w.known()) return Status::NotFound("unlinked");
    int fd = ::openat(w.dirfd, w.name.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    bool writable = true;
    if (fd < 0 && (errno == EACCES || errno == EROFS || errno == EPERM)) {
      fd = ::openat(w.dirfd, w.name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
      writable = false;
    }
    if (fd < 0) return Errno("open backing file");
    auto content = volume_->OpenContent(fd);
    if (!content.ok()) {
      ::close(fd);
      spdlog::error("cannot open {}: {}", PathForLog(inode), content.status().ToString());
      return content.status();
    }
    inode->content_fd = fd;
    inode->content_writable = writable;
    inode->content = std::move(*content);
    return Status::Ok();
  }
  // truncate(2), ftruncate(2), O_TRUNC: POSIX marks mtime and ctime for
  // update even when the size does not change (truncating an empty file),
  // and the backing file may not have changed at all.
  // REQUIRES: inode->mu held, inode->content set.
  Status Truncate(Inode* inode, uint64_t size) {
    ENVELOPE_RETURN_IF_ERROR(inode->content->Truncate(size));
    const struct timespec now[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
    if (::futimens(inode->content_fd, now) != 0) return Errno("futimens");
    return Status::Ok();
  }

  // REQUIRES: inode->mu held.
  void MaybeCloseContent(Inode* inode) {
    if (inode->open_count > 0 || !inode->content) return;
    inode->content.reset();
    ::close(inode->content_fd);
    inode->content_fd = -1;
  }

  bool running_as_root_ = ::geteuid() == 0;

 private:
  Volume* const volume_;
  InodeTable inodes_;
  const double timeout_;
};

EnvelopeFs* Fs(fuse_req_t req) { return static_cast<EnvelopeFs*>(fuse_req_userdata(req)); }
Inode* Node(fuse_req_t req, fuse_ino_t ino) { return Fs(req)->inodes().Get(ino); }

void ReplyError(fuse_req_t req, const Status& s) { fuse_reply_err(req, ToErrno(s)); }

// ---- lookup, attributes ---------------------------------------------------

void OpInit(void* userdata, fuse_conn_info* conn) {
  (void)userdata;
  // Local POSIX and flock locks (the kernel handles them for one mount).
  conn->want &= ~FUSE_CAP_POSIX_LOCKS;
  conn->want &= ~FUSE_CAP_FLOCK_LOCKS;
  // We transform every byte, so splicing buys nothing.
  conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
  // The kernel applies the caller's umask before it calls us.
  conn->want &= ~FUSE_CAP_DONT_MASK;
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  EnvelopeFs* fs = Fs(req);
  Inode* dir = Node(req, parent);
  auto en = fs->Encode(dir, name);
  if (!en.ok()) return ReplyError(req, en.status());
  fuse_entry_param e;
  Status s = fs->LookupBacking(dir, en->backing_name, &e);
  if (!s.ok()) {
    if (ToErrno(s) == ENOENT) {
      // Negative entry, cached for the usual timeout.
      std::memset(&e, 0, sizeof(e));
      e.entry_timeout = fs->timeout();
      fuse_reply_entry(req, &e);
      return;
    }
    return ReplyError(req, s);
  }
  fuse_reply_entry(req, &e);
}

void OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  Fs(req)->inodes().Forget(Node(req, ino), nlookup);
  fuse_reply_none(req);
}

void OpForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) {
    Fs(req)->inodes().Forget(Node(req, forgets[i].ino), forgets[i].nlookup);
  }
  fuse_reply_none(req);
}

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  struct stat st;
  Status s = Fs(req)->Stat(Node(req, ino), &st);
  if (!s.ok()) return ReplyError(req, s);
  fuse_reply_attr(req, &st, Fs(req)->timeout());
}

void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  EnvelopeFs* fs = Fs(req);
  Inode* inode = Node(req, ino);
  const Where w = fs->Locate(inode);
  if (!w.known()) return (void)fuse_reply_err(req, ENOENT);
  const int empty_path = w.name.empty() ? AT_EMPTY_PATH : 0;
  if (to_set & FUSE_SET_ATTR_MODE) {
    if (S_ISLNK(inode->type)) return (void)fuse_reply_err(req, EOPNOTSUPP);
    int rc = w.name.empty() ? ::chmod(ProcPath(w.dirfd).c_str(), attr->st_mode & 07777)
                            : ::fchmodat(w.dirfd, w.name.c_str(), attr->st_mode & 07777, 0);
    if (rc != 0) return (void)fuse_reply_err(req, errno);
  }
  if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : static_cast<uid_t>(-1);
    gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : static_cast<gid_t>(-1);
    if (::fchownat(w.dirfd, w.name.c_str(), uid, gid, empty_path | AT_SYMLINK_NOFOLLOW) != 0) {
      return (void)fuse_reply_err(req, errno);
    }
  }
  if (to_set & FUSE_SET_ATTR_SIZE) {
    if (!S_ISREG(inode->type)) return (void)fuse_reply_err(req, EINVAL);
    std::lock_guard lock(inode->mu);
    Status s = fs->EnsureContent(inode);
    if (s.ok() && !inode->content_writable) s = Status::IoError("read-only backing file", EACCES);
    if (s.ok()) s = fs->Truncate(inode, static_cast<uint64_t>(attr->st_size));
    fs->MaybeCloseContent(inode);
    if (!s.ok()) return ReplyError(req, s);
  }
  if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
    struct timespec tv[2];
    tv[0].tv_nsec = UTIME_OMIT;
    tv[1].tv_nsec = UTIME_OMIT;
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
      tv[0].tv_nsec = UTIME_NOW;
    } else if (to_set & FUSE_SET_ATTR_ATIME) {
      tv[0] = attr->st_atim;
    }
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
      tv[1].tv_nsec = UTIME_NOW;
    } else if (to_set & FUSE_SET_ATTR_MTIME) {
      tv[1] = attr->st_mtim;
    }
    if (::utimensat(w.dirfd, w.name.c_str(), tv, w.name.empty() ? AT_EMPTY_PATH : AT_SYMLINK_NOFOLLOW) != 0) {
      return (void)fuse_reply_err(req, errno);
    }
  }
  OpGetattr(req, ino, nullptr);
}

// A backing directory is empty when only our id file is left in it.
StatusOr<bool> BackingDirIsEmpty(int parent_fd, const std::string& name) {
  int fd = ::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return Errno("open directory");
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return Errno("fdopendir");
  }
  bool empty = true;
  while (dirent* de = ::readdir(d)) {
    std::string_view n = de->d_name;
    if (n == "." || n == ".." || n == format::kDirIdFileName) continue;
    empty = false;
    break;
  }
  ::closedir(d);
  return empty;
}

// ---- creating and removing names ------------------------------------------

// The first steps of every operation that adds a name: encrypt it and, for a
// long name, write its side file before the entry exists.
StatusOr<format::EncodedName> PrepareNewName(EnvelopeFs* fs, Inode* dir, const char* name) {
  ENVELOPE_ASSIGN_OR_RETURN(format::EncodedName en, fs->Encode(dir, name));
  ENVELOPE_RETURN_IF_ERROR(fs->WriteLongNameFile(dir, en));
  return en;
}

// After creating the entry failed with `err`: drop the side file, unless the
// name was taken (then the side file is the existing entry's), and reply.
void FailNewName(fuse_req_t req, EnvelopeFs* fs, Inode* dir, const format::EncodedName& en,
                 int err) {
  if (err != EEXIST) fs->RemoveLongNameFile(dir, en);
  fuse_reply_err(req, err);
}

// After the backing object `backing` was created in `dir`: set owner, look
// it up and reply.
void ReplyNewEntry(fuse_req_t req, Inode* dir, const std::string& backing) {
  EnvelopeFs* fs = Fs(req);
  fs->ChownToCaller(req, dir->fd, backing);
  fuse_entry_param e;
  Status s = fs->LookupBacking(dir, backing, &e);
  if (!s.ok()) return ReplyError(req, s);
  fuse_reply_entry(req, &e);
}

void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  EnvelopeFs* fs = Fs(req);
  Inode* dir = Node(req, parent);
  auto en = PrepareNewName(fs, dir, name);
  if (!en.ok()) return ReplyError(req, en.status());
  // Created private, given its id file, then set to the exact mode asked
  // for (mkdir(path, 0151) shows 0151).
  if (::mkdirat(dir->fd, en->backing_name.c_str(), 0700) != 0) {
    return FailNewName(req, fs, dir, *en, errno);
  }
  UniqueFd d(::openat(dir->fd, en->backing_name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  Status s = d.valid() ? fs->volume()->CreateDirId(d.get()) : Errno("open new directory");
  if (s.ok() && ::fchmod(d.get(), mode & 07777) != 0) s = Errno("fchmod");
  if (!s.ok()) {
    if (d.valid()) ::unlinkat(d.get(), std::string(format::kDirIdFileName).c_str(), 0);
    ::unlinkat(dir->fd, en->backing_name.c_str(), AT_REMOVEDIR);
    fs->RemoveLongNameFile(dir, *en);
    return ReplyError(req, s);
  }
  ReplyNewEntry(req, dir, en->backing_name);
}

void OpMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  EnvelopeFs* fs = Fs(req);
  Inode* dir = Node(req, parent);
  auto en = PrepareNewName(fs, dir, name);
  if (!en.ok()) return ReplyError(req, en.status());
  if (S_ISREG(mode)) {
    // A regular file needs its header and DEK like any created file.
    int fd = ::openat(dir->fd, en->backing_name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
                      mode & 07777);
    if (fd < 0) return (void)fuse_reply_err(req, errno);
    auto content = fs->volume()->CreateContent(fd);
    ::close(fd);
    if (!content.ok()) {
      ::unlinkat(dir->fd, en->backing_name.c_str(), 0);
      fs->RemoveLongNameFile(dir, *en);
      return ReplyError(req, content.status());
    }
  } else if (::mknodat(dir->fd, en->backing_name.c_str(), mode, rdev) != 0) {
    return FailNewName(req, fs, dir, *en, errno);
  }
  ReplyNewEntry(req, dir, en->backing_name);
}

void OpSymlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  EnvelopeFs* fs = Fs(req);
  Inode* dir = Node(req, parent);
  if (std::strlen(target) > format::kMaxSymlinkTargetInBytes) {
    return (void)fuse_reply_err(req, ENAMETOOLONG);
  }
  auto en = PrepareNewName(fs, dir, name);
  if (!en.ok()) return ReplyError(req, en.status());
  Status s = fs->volume()->CreateSymlink(target, dir->fd, en->backing_name);
  if (!s.ok()) return FailNewName(req, fs, dir, *en, ToErrno(s));
  ReplyNewEntry(req, dir, en->backing_name);
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  auto target = Fs(req)->ReadLink(Node(req, ino));
  if (!target.ok()) return ReplyError(req, target.status());
  fuse_reply_readlink(req, target->c_str());
}

void OpLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  EnvelopeFs* fs = Fs(req);
  Inode* inode = Node(req, ino);
  Inode* dir = Node(req, newparent);
  auto en = PrepareNewName(fs, dir, newname);
  if (!en.ok()) return ReplyError(req, en.status());
  const Where w = fs->Locate(inode);
  if (!w.known()) return (void)fuse_reply_err(req, ENOENT);
  if (::linkat(w.dirfd, w.name.c_str(), dir->fd, en->backing_name.c_str(),
               w.name.empty() ? AT_EMPTY_PATH : 0) != 0) {
    return FailNewName(req, fs, dir, *en, errno);
  }
  // No ChownToCaller: a new link to an existing file keeps its owner.
  fuse_entry_param e;
  Status s = fs->LookupBacking(dir, en->backing_name, &e);
  if (!s.ok()) return ReplyError(req, s);
  fuse_reply_entry(req, &e);
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  EnvelopeFs* fs = Fs(req);
  Inode* dir = Node(req, parent);
  auto en = fs->Encode(dir, name);
  if (!en.ok()) return ReplyError(req, en.status());
  auto empty = BackingDirIsEmpty(dir->fd, en->backing_name);
  if (!empty.ok()) return ReplyError(req, empty.status());
  if (!*empty) return (void)fuse_reply_err(req, ENOTEMPTY);
  std::string id_path = en->backing_name + "/" + std::string(format::kDirIdFileName);
  // Keep the id readable in case rmdir fails (e.g. the directory is busy):
  // move it aside, remove the directory, put it back on failure.
  UniqueFd sub(::openat(dir->fd, en->backing_name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  Bytes id(format::kDirIdSizeInBytes);
  if (sub.valid()) {
    UniqueFd idf(::openat(sub.get(), std::string(format::kDirIdFileName).c_str(), O_RDONLY | O_CLOEXEC));
    if (idf.valid()) (void)PreadFull(idf.get(), id, 0);
  }
  if (::unlinkat(dir->fd, id_path.c_str(), 0) != 0 && errno != ENOENT) {
    return (void)fuse_reply_err(req, errno);
  }
  if (::unlinkat(dir->fd, en->backing_name.c_str(), AT_REMOVEDIR) != 0) {
    int err = errno;
    if (sub.valid()) {
      UniqueFd idf(::openat(sub.get(), std::string(format::kDirIdFileName).c_str(),
                            O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400));
      if (idf.valid()) (void)PwriteFull(idf.get(), id, 0);
    }
    return (void)fuse_reply_err(req, err);
  }
  fs->RemoveLongNameFile(dir, *en);
  fuse_reply_err(req, 0);
}

// The raw backing target of a symlink about to lose its last link (its
// long-target file goes with it), else "".
std::string LastLinkTarget(int dirfd, const std::string& backing, const struct stat& st) {
  if (!S_ISLNK(st.st_mode) || st.st_nlink != 1) return "";
  char buf[format::kMaxInlineTargetInBytes + 1];
  ssize_t n = ::readlinkat(dirfd, backing.c_str(), buf, sizeof(buf));
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  EnvelopeFs* fs = Fs(req);
  Inode* dir = Node(req, parent);
  auto en = fs->Encode(dir, name);
  if (!en.ok()) return ReplyError(req, en.status());
  struct stat st;
  const bool known = ::fstatat(dir->fd, en->backing_name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  const std::string raw_target = known ? LastLinkTarget(dir->fd, en->backing_name, st) : "";
  if (::unlinkat(dir->fd, en->backing_name.c_str(), 0) != 0) return (void)fuse_reply_err(req, errno);
  fs->RemoveLongNameFile(dir, *en);
  fs->volume()->DropSymlinkTarget(raw_target);
  // Other links of the file must not be reached through this name any more.
  if (known) fs->inodes().Unbind(st.st_dev, st.st_ino, dir, en->backing_name);
  fuse_reply_err(req, 0);
}

void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned int flags) {
  EnvelopeFs* fs = Fs(req);
  Inode* from_dir = Node(req, parent);
  Inode* to_dir = Node(req, newparent);
  auto from = fs->Encode(from_dir, name);
  if (!from.ok()) return ReplyError(req, from.status());
  auto to = fs->Encode(to_dir, newname);
  if (!to.ok()) return ReplyError(req, to.status());
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) return (void)fuse_reply_err(req, EINVAL);
  // Side files belong to names, not objects: an exchange keeps both names,
  // a move needs the new name's side file before and drops the old one after.
  const bool exchange = flags & RENAME_EXCHANGE;
  // The object a plain rename replaces loses that name.
  struct stat victim;
  const bool replaces = !exchange && ::fstatat(to_dir->fd, to->backing_name.c_str(), &victim,
                                               AT_SYMLINK_NOFOLLOW) == 0;
  const std::string victim_target =
      replaces ? LastLinkTarget(to_dir->fd, to->backing_name, victim) : "";
  if (!exchange) {
    Status s = fs->WriteLongNameFile(to_dir, *to);
    if (!s.ok()) return ReplyError(req, s);
  }
  if (::renameat2(from_dir->fd, from->backing_name.c_str(), to_dir->fd, to->backing_name.c_str(),
                  flags) != 0) {
    int err = errno;
    // Replacing a directory that is empty to the user: the backing one
    // still holds its id file, which must go first (and comes back if the
    // rename fails after all).
    if ((err == ENOTEMPTY || err == EEXIST) && !exchange && !(flags & RENAME_NOREPLACE)) {
      auto empty = BackingDirIsEmpty(to_dir->fd, to->backing_name);
      if (empty.ok() && *empty) {
        std::string id_path = to->backing_name + "/" + std::string(format::kDirIdFileName);
        Bytes id(format::kDirIdSizeInBytes);
        {
          UniqueFd idf(::openat(to_dir->fd, id_path.c_str(), O_RDONLY | O_CLOEXEC));
          if (idf.valid()) (void)PreadFull(idf.get(), id, 0);
        }
        ::unlinkat(to_dir->fd, id_path.c_str(), 0);
        if (::renameat2(from_dir->fd, from->backing_name.c_str(), to_dir->fd,
                        to->backing_name.c_str(), flags) == 0) {
          err = 0;
        } else {
          err = errno;
          UniqueFd idf(::openat(to_dir->fd, id_path.c_str(),
                                O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400));
          if (idf.valid()) (void)PwriteFull(idf.get(), id, 0);
        }
      }
    }
    if (err != 0) return (void)fuse_reply_err(req, err);
  }
  if (!exchange && from->backing_name != to->backing_name) fs->RemoveLongNameFile(from_dir, *from);
  // Non-directories are found by (directory, name): follow the move.
  struct stat st;
  if (::fstatat(to_dir->fd, to->backing_name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (replaces && (victim.st_dev != st.st_dev || victim.st_ino != st.st_ino)) {
      fs->inodes().Unbind(victim.st_dev, victim.st_ino, to_dir, to->backing_name);
      fs->volume()->DropSymlinkTarget(victim_target);
    }
    fs->inodes().Rebind(st.st_dev, st.st_ino, from_dir, from->backing_name, to_dir,
                        to->backing_name);
  }
  if (exchange && ::fstatat(from_dir->fd, from->backing_name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    fs->inodes().Rebind(st.st_dev, st.st_ino, to_dir, to->backing_name, from_dir,
                        from->backing_name);
  }
  fuse_reply_err(req, 0);
}

// ---- directories ----------------------------------------------------------

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  EnvelopeFs* fs = Fs(req);
  Inode* dir = Node(req, ino);
  auto id = fs->DirIdOf(dir);
  if (!id.ok()) return ReplyError(req, id.status());
  int fd = ::openat(dir->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return (void)fuse_reply_err(req, errno);
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return (void)fuse_reply_err(req, errno);
  }
  auto handle = std::make_unique<DirHandle>();
  // glibc skips entries whose inode number is 0, so "." and ".." carry the
  // backing directories' numbers.
  struct stat dot, dotdot;
  ino_t dot_ino = ::fstat(fd, &dot) == 0 ? dot.st_ino : 1;
  ino_t dotdot_ino = ::fstatat(fd, "..", &dotdot, 0) == 0 ? dotdot.st_ino : 1;
  handle->entries.push_back({".", "", dot_ino, S_IFDIR});
  handle->entries.push_back({"..", "", dotdot_ino, S_IFDIR});
  while (dirent* de = ::readdir(d)) {
    std::string_view n = de->d_name;
    if (n == "." || n == "..") continue;
    const BackingNameKind kind = NameCodec::Classify(n);
    if (kind == BackingNameKind::kInternal || kind == BackingNameKind::kLongSideFile) continue;
    auto decoded = fs->volume()->DecodeBackingName(fd, n, *id);
    if (!decoded.ok()) {
      spdlog::warn("skipping backing entry {}: {}", n, decoded.status().ToString());
      continue;
    }
    handle->entries.push_back(
        {std::move(*decoded), std::string(n), de->d_ino, static_cast<mode_t>(DTTOIF(de->d_type))});
  }
  ::closedir(d);
  fi->fh = reinterpret_cast<uint64_t>(handle.release());
  fi->cache_readdir = 0;
  fuse_reply_open(req, fi);
}

void DoReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi,
               bool plus) {
  EnvelopeFs* fs = Fs(req);
  auto* handle = reinterpret_cast<DirHandle*>(fi->fh);
  Inode* dir = Node(req, ino);
  std::vector<char> buf(size);
  size_t used = 0;
  for (size_t i = static_cast<size_t>(offset); i < handle->entries.size(); ++i) {
    const DirEntry& de = handle->entries[i];
    size_t n;
    if (plus) {
      fuse_entry_param e;
      std::memset(&e, 0, sizeof(e));
      bool looked_up = false;
      if (de.name != "." && de.name != "..") {
        if (fs->LookupBacking(dir, de.backing, &e).ok()) looked_up = true;
        if (!looked_up) continue;  // vanished since opendir
      } else {
        // No lookup for the dot entries: the kernel does not count them.
        e.attr.st_mode = S_IFDIR;
        e.attr.st_ino = de.ino;
      }
      n = fuse_add_direntry_plus(req, buf.data() + used, size - used, de.name.c_str(), &e,
                                 static_cast<off_t>(i + 1));
      if (n > size - used) {
        if (looked_up) fs->inodes().Forget(fs->inodes().Get(e.ino), 1);
        break;
      }
    } else {
      struct stat st;
      std::memset(&st, 0, sizeof(st));
      st.st_ino = de.ino;
      st.st_mode = de.type;
      n = fuse_add_direntry(req, buf.data() + used, size - used, de.name.c_str(), &st,
                            static_cast<off_t>(i + 1));
      if (n > size - used) break;
    }
    used += n;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  DoReaddir(req, ino, size, off, fi, false);
}
void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  DoReaddir(req, ino, size, off, fi, true);
}

void OpReleasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  delete reinterpret_cast<DirHandle*>(fi->fh);
  fuse_reply_err(req, 0);
}

void OpFsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info*) {
  UniqueFd fd(::openat(Node(req, ino)->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return (void)fuse_reply_err(req, errno);
  int rc = datasync ? ::fdatasync(fd.get()) : ::fsync(fd.get());
  fuse_reply_err(req, rc == 0 ? 0 : errno);
}

// ---- regular files --------------------------------------------------------

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              fuse_file_info* fi) {
  EnvelopeFs* fs = Fs(req);
  Inode* dir = Node(req, parent);
  auto en = PrepareNewName(fs, dir, name);
  if (!en.ok()) return ReplyError(req, en.status());
  int fd = ::openat(dir->fd, en->backing_name.c_str(),
                    O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (fi->flags & O_EXCL), mode & 07777);
  if (fd < 0) {
    return FailNewName(req, fs, dir, *en, errno);
  }
  struct stat st;
  ::fstat(fd, &st);
  StatusOr<std::unique_ptr<format::ContentFile>> content =
      st.st_size == 0 ? fs->volume()->CreateContent(fd) : fs->volume()->OpenContent(fd);
  if (!content.ok()) {
    ::close(fd);
    if (st.st_size == 0) {
      ::unlinkat(dir->fd, en->backing_name.c_str(), 0);
      fs->RemoveLongNameFile(dir, *en);
    }
    spdlog::error("create failed: {}", content.status().ToString());
    return ReplyError(req, content.status());
  }
  fs->ChownToCaller(req, dir->fd, en->backing_name);
  fuse_entry_param e;
  Status s = fs->LookupBacking(dir, en->backing_name, &e);
  if (!s.ok()) {
    ::close(fd);
    return ReplyError(req, s);
  }
  Inode* inode = fs->inodes().Get(e.ino);
  const bool truncate = (fi->flags & O_TRUNC) && st.st_size != 0;
  {
    std::lock_guard lock(inode->mu);
    if (!inode->content) {
      inode->content_fd = fd;
      inode->content_writable = true;
      inode->content = std::move(*content);
    } else {
      content->reset();
      ::close(fd);
    }
    if (truncate) s = fs->Truncate(inode, 0);
    ++inode->open_count;
  }
  if (!s.ok()) return ReplyError(req, s);
  // LookupBacking already filled e.attr; only a truncation changed it since.
  if (truncate) {
    s = fs->Stat(inode, &e.attr);
    if (!s.ok()) return ReplyError(req, s);
  }
  fi->keep_cache = 0;
  fuse_reply_create(req, &e, fi);
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  EnvelopeFs* fs = Fs(req);
  Inode* inode = Node(req, ino);
  Status s;
  {
    std::lock_guard lock(inode->mu);
    s = fs->EnsureContent(inode);
    if (s.ok() && (fi->flags & O_ACCMODE) != O_RDONLY && !inode->content_writable) {
      s = Status::IoError("backing file is read-only", EACCES);
    }
    if (s.ok() && (fi->flags & O_TRUNC)) s = fs->Truncate(inode, 0);
    if (s.ok()) {
      ++inode->open_count;
    } else {
      fs->MaybeCloseContent(inode);
    }
  }
  if (!s.ok()) return ReplyError(req, s);
  fi->keep_cache = 0;
  fuse_reply_open(req, fi);
}

void OpRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  EnvelopeFs* fs = Fs(req);
  Inode* inode = Node(req, ino);
  {
    std::lock_guard lock(inode->mu);
    --inode->open_count;
    fs->MaybeCloseContent(inode);
  }
  fuse_reply_err(req, 0);
}

void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  Inode* inode = Node(req, ino);
  // Per thread and reused: a fresh 128 KiB vector per request costs an
  // allocation and a memset for nothing (fuse_reply_buf copies it out).
  thread_local std::vector<uint8_t> buf;
  buf.resize(size);
  StatusOr<size_t> n = Status::Internal("BUG: read without content");
  {
    std::shared_lock lock(inode->mu);  // reads of one file run in parallel
    if (inode->content) n = inode->content->Read(static_cast<uint64_t>(off), buf);
  }
  if (!n.ok()) {
    spdlog::error("read of {} at offset {}: {}", Fs(req)->PathForLog(inode), off,
                  n.status().ToString());
    return ReplyError(req, n.status());
  }
  fuse_reply_buf(req, reinterpret_cast<const char*>(buf.data()), *n);
}

void OpWrite(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t off,
             fuse_file_info*) {
  Inode* inode = Node(req, ino);
  Status s = Status::Internal("BUG: write without content");
  {
    std::lock_guard lock(inode->mu);
    if (inode->content) {
      s = inode->content->Write(static_cast<uint64_t>(off),
                                ByteView(reinterpret_cast<const uint8_t*>(data), size));
    }
  }
  if (!s.ok()) {
    spdlog::error("write of {} at offset {}: {}", Fs(req)->PathForLog(inode), off, s.ToString());
    return ReplyError(req, s);
  }
  fuse_reply_write(req, size);
}

void OpFsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info*) {
  Inode* inode = Node(req, ino);
  int rc = 0;
  {
    std::lock_guard lock(inode->mu);
    if (inode->content_fd >= 0) {
      rc = datasync ? ::fdatasync(inode->content_fd) : ::fsync(inode->content_fd);
    }
  }
  fuse_reply_err(req, rc == 0 ? 0 : errno);
}

void OpFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                 fuse_file_info*) {
  if (mode != 0) return (void)fuse_reply_err(req, EOPNOTSUPP);
  Inode* inode = Node(req, ino);
  Status s;
  {
    std::lock_guard lock(inode->mu);
    if (!inode->content) {
      s = Status::Internal("BUG: fallocate without content");
    } else {
      auto size = inode->content->Size();
      s = size.status();
      const uint64_t end = static_cast<uint64_t>(offset) + static_cast<uint64_t>(length);
      // Every byte of an envelopefs file is backed (holes are sealed zeros),
      // so allocating means extending.
      if (s.ok() && end > *size) s = inode->content->Truncate(end);
    }
  }
  if (!s.ok()) return ReplyError(req, s);
  fuse_reply_err(req, 0);
}

// Only called without default_permissions, when the caller is the user the
// daemon runs as: the backing object's own answer is the caller's.
void OpAccess(fuse_req_t req, fuse_ino_t ino, int mask) {
  const Where w = Fs(req)->Locate(Node(req, ino));
  if (!w.known()) return (void)fuse_reply_err(req, ENOENT);
  int rc = w.name.empty() ? ::faccessat(AT_FDCWD, ProcPath(w.dirfd).c_str(), mask, AT_EACCESS)
                          : ::faccessat(w.dirfd, w.name.c_str(), mask, AT_EACCESS | AT_SYMLINK_NOFOLLOW);
  fuse_reply_err(req, rc == 0 ? 0 : errno);
}

// ---- statfs, xattrs --------------------------------------------------------

void OpStatfs(fuse_req_t req, fuse_ino_t) {
  struct statvfs sv;
  if (::fstatvfs(Fs(req)->inodes().root()->fd, &sv) != 0) return (void)fuse_reply_err(req, errno);
  sv.f_namemax = format::kMaxNameInBytes;
  fuse_reply_statfs(req, &sv);
}

// A path to the backing object for the l*xattr calls (which do not follow a
// final symlink): through /proc for the descriptor we hold.
std::string XattrPath(Inode* inode) {
  Where w = inode->where();
  // For a directory, "/." makes the last component the directory itself
  // rather than the /proc magic link (which l*xattr would act on).
  return ProcPath(w.dirfd) + "/" + (w.name.empty() ? std::string(".") : w.name);
}

// Backing xattr name for a user.* name: user.<base64url(SIV(name))>.
StatusOr<std::string> BackingXattrName(EnvelopeFs* fs, std::string_view name) {
  if (name.rfind(kUserXattrPrefix, 0) != 0) {
    return Status::IoError("only user.* extended attributes are supported", EOPNOTSUPP);
  }
  auto sealed = fs->volume()->names().EncodeName(name, DirId{});
  if (!sealed.ok() || !sealed->long_name_content.empty()) {
    return Status::IoError("extended attribute name too long", ERANGE);
  }
  return std::string(kUserXattrPrefix) + sealed->backing_name;
}

void OpSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                int flags) {
  EnvelopeFs* fs = Fs(req);
  Inode* inode = Node(req, ino);
  auto backing = BackingXattrName(fs, name);
  if (!backing.ok()) return ReplyError(req, backing.status());
  auto sealed = fs->volume()->SealXattrValue(name, ByteView(reinterpret_cast<const uint8_t*>(value), size));
  if (!sealed.ok()) return ReplyError(req, sealed.status());
  if (::lsetxattr(XattrPath(inode).c_str(), backing->c_str(), sealed->data(), sealed->size(),
                  flags) != 0) {
    return (void)fuse_reply_err(req, errno);
  }
  fuse_reply_err(req, 0);
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  EnvelopeFs* fs = Fs(req);
  Inode* inode = Node(req, ino);
  auto backing = BackingXattrName(fs, name);
  if (!backing.ok()) {
    return (void)fuse_reply_err(req, ToErrno(backing.status()) == EOPNOTSUPP ? ENODATA : ToErrno(backing.status()));
  }
  std::vector<uint8_t> buf(64 * 1024 + 64);
  ssize_t n = ::lgetxattr(XattrPath(inode).c_str(), backing->c_str(), buf.data(), buf.size());
  if (n < 0) return (void)fuse_reply_err(req, errno);
  auto value = fs->volume()->OpenXattrValue(name, ByteView(buf.data(), static_cast<size_t>(n)));
  if (!value.ok()) return (void)fuse_reply_err(req, EIO);
  if (size == 0) return (void)fuse_reply_xattr(req, value->size());
  if (size < value->size()) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, reinterpret_cast<const char*>(value->data()), value->size());
}

void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  EnvelopeFs* fs = Fs(req);
  Inode* inode = Node(req, ino);
  std::vector<char> buf(64 * 1024);
  ssize_t n = ::llistxattr(XattrPath(inode).c_str(), buf.data(), buf.size());
  if (n < 0) return (void)fuse_reply_err(req, errno == ENOTSUP ? 0 : errno);
  std::string out;
  for (ssize_t i = 0; i < n;) {
    std::string_view bname(buf.data() + i);
    i += static_cast<ssize_t>(bname.size()) + 1;
    if (bname.rfind(kUserXattrPrefix, 0) != 0) continue;
    auto name = fs->volume()->names().DecodeName(bname.substr(kUserXattrPrefix.size()), DirId{});
    if (!name.ok()) continue;  // ours (the DEK xattr) or foreign
    out += *name;
    out.push_back('\0');
  }
  if (size == 0) return (void)fuse_reply_xattr(req, out.size());
  if (size < out.size()) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, out.data(), out.size());
}

void OpRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  EnvelopeFs* fs = Fs(req);
  auto backing = BackingXattrName(fs, name);
  if (!backing.ok()) return ReplyError(req, backing.status());
  if (::lremovexattr(XattrPath(Node(req, ino)).c_str(), backing->c_str()) != 0) {
    return (void)fuse_reply_err(req, errno);
  }
  fuse_reply_err(req, 0);
}

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops;
  std::memset(&ops, 0, sizeof(ops));
  ops.init = OpInit;
  ops.lookup = OpLookup;
  ops.forget = OpForget;
  ops.forget_multi = OpForgetMulti;
  ops.getattr = OpGetattr;
  ops.setattr = OpSetattr;
  ops.readlink = OpReadlink;
  ops.mknod = OpMknod;
  ops.mkdir = OpMkdir;
  ops.unlink = OpUnlink;
  ops.rmdir = OpRmdir;
  ops.symlink = OpSymlink;
  ops.access = OpAccess;
  ops.rename = OpRename;
  ops.link = OpLink;
  ops.open = OpOpen;
  ops.read = OpRead;
  ops.write = OpWrite;
  // No flush: writes reach the backing file before WRITE is answered, and
  // locks are the kernel's, so close(2) has nothing for us to do. The
  // kernel stops sending FLUSH after the first ENOSYS, which saves a round
  // trip on every close.
  ops.release = OpRelease;
  ops.fsync = OpFsync;
  ops.opendir = OpOpendir;
  ops.readdir = OpReaddir;
  ops.readdirplus = OpReaddirplus;
  ops.releasedir = OpReleasedir;
  ops.fsyncdir = OpFsyncdir;
  ops.statfs = OpStatfs;
  ops.setxattr = OpSetxattr;
  ops.getxattr = OpGetxattr;
  ops.listxattr = OpListxattr;
  ops.removexattr = OpRemovexattr;
  ops.create = OpCreate;
  ops.fallocate = OpFallocate;
  return ops;
}

}  // namespace

Status MountAndServe(Volume* volume, const MountOptions& options) {
  // Every inode the kernel remembers holds an O_PATH descriptor (as in
  // passthrough_hp), so a large tree needs far more than the default 1024.
  struct rlimit nofile;
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &nofile) != 0) {
      spdlog::warn("cannot raise the open file limit: {}", std::strerror(errno));
    }
  }
  int root_fd = ::open(volume->cipherdir().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) return Errno("open cipherdir");
  // Backing modes are exactly what callers asked for (the kernel has already
  // applied their umask), so ours must not interfere.
  ::umask(0);
  EnvelopeFs fs(volume, root_fd, options.attr_timeout_seconds);

  std::vector<std::string> arg_strings = {"envelopefs"};
  // Who checks permissions. Without allow_other only the mounting user
  // reaches the mount, and the daemon runs as that user, so the backing
  // filesystem's own checks on our system calls are exactly the caller's
  // (as in gocryptfs). With allow_other the daemon acts for other users
  // too, so the kernel must check modes against the attributes we report:
  // default_permissions. Leaving it out otherwise saves a GETATTR of the
  // directory per unlink or create (the kernel drops a directory's
  // attributes after each change and needs them again for the next check).
  bool allow_other = false;
  for (const auto& o : options.fuse_options) {
    std::stringstream ss(o);
    std::string opt;
    while (std::getline(ss, opt, ',')) allow_other |= opt == "allow_other";
  }
  std::string opts = std::string(allow_other ? "default_permissions," : "") +
                     "fsname=envelopefs:" + volume->cipherdir() + ",subtype=envelopefs";
  for (const auto& o : options.fuse_options) opts += "," + o;
  arg_strings.push_back("-o");
  arg_strings.push_back(opts);
  if (options.debug) arg_strings.push_back("-d");
  std::vector<char*> argv;
  for (auto& a : arg_strings) argv.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());

  fuse_lowlevel_ops ops = MakeOps();
  fuse_session* se = fuse_session_new(&args, &ops, sizeof(ops), &fs);
  if (se == nullptr) return Status::InvalidArgument("fuse_session_new failed (bad -o option?)");
  if (fuse_set_signal_handlers(se) != 0) {
    fuse_session_destroy(se);
    return Status::Internal("fuse_set_signal_handlers failed");
  }
  if (fuse_session_mount(se, options.mountpoint.c_str()) != 0) {
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return Status::IoError("cannot mount on " + options.mountpoint, EIO);
  }
  fuse_daemonize(options.foreground ? 1 : 0);
  fuse_loop_config* config = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(config, options.max_threads);
  fuse_loop_cfg_set_idle_threads(config, 4);
  int rc = fuse_session_loop_mt(se, config);
  fuse_loop_cfg_destroy(config);
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  fuse_opt_free_args(&args);
  if (rc != 0) return Status::IoError("the FUSE session ended with an error", EIO);
  return Status::Ok();
}

}  // namespace envelope::fs
