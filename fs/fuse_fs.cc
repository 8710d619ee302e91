#define FUSE_USE_VERSION 314
#include "fs/fuse_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <linux/falloc.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "core/base/fd_io.h"
#include "fs/backing_tree.h"
#include "fs/inode_table.h"
#include "fs/shared_storage.h"

namespace envelope::fs {

namespace {

using format::BackingNameKind;
using format::DirId;
using format::NameCodec;

constexpr std::string_view kUserXattrPrefix = "user.";

// A directory handle: the decoded listing, made at opendir.
struct DirEntry {
  std::string name;
  std::string backing;  // the backing name, so readdirplus need not re-encrypt
  ino_t ino;
  mode_t type;
};
struct DirHandle {
  std::vector<DirEntry> entries;  // made by readdir at offset 0
};

// Who a new object belongs to: -1 where it is to stay as created.
struct NewOwner {
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  bool any() const { return uid != static_cast<uid_t>(-1) || gid != static_cast<gid_t>(-1); }
};

// Every system call on a backing path goes through fs/backing_tree.h; this
// file makes none itself.
class EnvelopeFs {
 public:
  // `shared_storage`: other mounts change the same cipherdir
  // (docs/SHARED_STORAGE.md, fs/shared_storage.h).
  EnvelopeFs(Volume* volume, int root_fd, double timeout, bool shared_storage)
      : volume_(volume),
        inodes_(root_fd, shared_storage),
        timeout_(timeout),
        shared_(shared_storage) {}

  Volume* volume() { return volume_; }
  InodeTable& inodes() { return inodes_; }
  double timeout() const { return timeout_; }
  bool shared() const { return shared_; }

  // Runs `op` on inode->content: as it is, or with shared storage under the
  // backing file's lock, the content state re-validated first (`op` may
  // run twice). REQUIRES: inode->mu held (exclusively with shared storage),
  // inode->content set.
  Status OnContent(Inode* inode, shared::LockKind kind, const std::function<Status()>& op) {
    return shared_ ? shared::WithContent(volume_, inode, kind, op) : op();
  }

  // A recorded name may lead to another object by now: another mount, or a
  // local user who owns the backing directory, renamed or removed ours and
  // put something else there, perhaps of another type under the same inode
  // number (fs/inode_table.h). True if the backing stat `st` is not the
  // inode's object; the caller answers ESTALE, as a network filesystem
  // does for a file handle whose object is gone, which makes the kernel
  // look a path up again and retry.
  static bool Replaced(const Inode* inode, const struct stat& st) { return !inode->Is(st); }

  // `w` (the inode's where() or Locate()), checked with shared storage to
  // still be the inode's own object (ESTALE otherwise): what the calls that
  // act on a backing name (xattrs, access, readlink) use. Without shared
  // storage the check, a stat per call, is not made: there only a local
  // user changes names behind the mount, in a backing directory they own,
  // so such a call reaches an object in that user's directory; Stat, where
  // the check costs nothing, still refuses every other object.
  StatusOr<Where> Checked(Inode* inode, Where w) {
    if (!w.known()) return Status::NotFound("unlinked");
    if (shared_ && !w.name.empty()) {
      struct stat st;
      ENVELOPE_RETURN_IF_ERROR(backing::Stat(w.dirfd, w.name, &st));
      if (Replaced(inode, st)) return Status::IoError("the backing name was replaced", ESTALE);
    }
    return w;
  }

  // Hard links are refused with shared storage (docs/SHARED_STORAGE.md);
  // logged once per mount.
  void LogLinkRefused() {
    if (!link_refusal_logged_.exchange(true)) {
      spdlog::warn("sharedstorage: hard links are refused (EPERM) on this mount");
    }
  }

  StatusOr<DirId> DirIdOf(Inode* dir) {
    std::lock_guard lock(dir->mu);
    if (!dir->dir_id) {
      ENVELOPE_ASSIGN_OR_RETURN(UniqueFd fd, backing::OpenDir(dir->fd, ""));
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

  // stat of the backing object, translated to what the mount shows.
  Status Stat(Inode* inode, struct stat* st) {
    Status s;
    {
      // An open file answers from its descriptor: right even after its
      // name was unlinked or renamed elsewhere.
      std::lock_guard lock(inode->mu);
      if (inode->content_fd >= 0) {
        s = shared_ ? shared::StatLocked(inode->content_fd, st)
                    : backing::Stat(inode->content_fd, "", st);
      } else {
        Where w = inode->where();
        if (!w.known()) return Status::NotFound("unlinked");
        s = backing::Stat(w.dirfd, w.name, st);
      }
    }
    ENVELOPE_RETURN_IF_ERROR(s);
    if (Replaced(inode, *st)) return Status::IoError("the backing name was replaced", ESTALE);
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
      if (backing::Stat(inode->fd, std::string(format::kLongTargetDirName), &store).ok() &&
          S_ISDIR(store.st_mode)) {
        --st->st_nlink;
      }
    }
  }

  StatusOr<std::string> ReadLink(Inode* inode) {
    ENVELOPE_ASSIGN_OR_RETURN(Where w, Checked(inode, inode->where()));
    auto target = volume_->ReadSymlink(w.dirfd, w.name);
    // With shared storage: and still the inode's after the read.
    ENVELOPE_RETURN_IF_ERROR(Checked(inode, w).status());
    return target;
  }

  // The plaintext path of an inode for a log line ("/docs/a.txt"), or its
  // backing inode number if the path cannot be found.
  std::string PathForLog(Inode* inode) {
    const Where w = inode->where();
    auto dir = w.known() ? backing::DescriptorPath(w.dirfd) : StatusOr<std::string>("");
    const std::string& root = volume_->cipherdir();
    if (dir.ok() && (*dir == root || dir->rfind(root + "/", 0) == 0)) {
      std::string rel = dir->substr(root.size());
      if (!w.name.empty()) rel += "/" + w.name;
      auto path = volume_->PlaintextPath(rel);
      if (path.ok()) return *path;
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
  Status LookupBacking(Inode* parent, const std::string& name, fuse_entry_param* e) {
    struct stat st;
    ENVELOPE_RETURN_IF_ERROR(backing::Stat(parent->fd, name, &st));
    // A directory the kernel already knows keeps its descriptor; only a new
    // one is opened (fs_mark's mkdir of an existing directory, `cd`, path
    // walks after the entry timeout all look directories up again).
    Inode* inode = S_ISDIR(st.st_mode) ? inodes_.AddIfKnown(parent, name, st) : nullptr;
    if (inode == nullptr) {
      UniqueFd dir_fd;
      if (S_ISDIR(st.st_mode)) {
        ENVELOPE_ASSIGN_OR_RETURN(dir_fd, backing::OpenSubdirPath(parent->fd, name));
        struct stat again;
        // The name may have been replaced between the two calls.
        if (!backing::Stat(dir_fd.get(), "", &again).ok() || again.st_ino != st.st_ino ||
            again.st_dev != st.st_dev) {
          return Status::IoError("directory changed during lookup", EAGAIN);
        }
      }
      inode = inodes_.Add(parent, name, st, dir_fd.release());
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

  // The owner a new object in `dir` gets when we are root (a non-root
  // daemon can only create objects it owns): the caller, and the group of
  // a setgid directory (as ext4 does), else the caller's group.
  NewOwner OwnerForNew(fuse_req_t req, Inode* dir) {
    NewOwner o;
    if (!running_as_root_) return o;
    const fuse_ctx* ctx = fuse_req_ctx(req);
    if (ctx->uid == ::geteuid() && ctx->gid == ::getegid()) return o;
    struct stat parent;
    const bool setgid = backing::Stat(dir->fd, "", &parent).ok() && (parent.st_mode & S_ISGID);
    // The backing object already has the setgid directory's group (the
    // backing filesystem gave it), and a new object is already ours.
    if (ctx->uid != ::geteuid()) o.uid = ctx->uid;
    if (!setgid && ctx->gid != ::getegid()) o.gid = ctx->gid;
    return o;
  }

  // Gives the new object `name` in `dir` (type `type`, S_IFMT bits) to
  // `owner`: through `fd` when the caller holds one, else through an
  // O_PATH descriptor of the object just made (ours, one link, that type).
  void GiveToOwner(const NewOwner& owner, Inode* dir, const std::string& name, int fd, mode_t type) {
    if (!owner.any()) return;
    UniqueFd obj;
    if (fd < 0) {
      struct stat st;
      if (!backing::Stat(dir->fd, name, &st).ok() || (st.st_mode & S_IFMT) != type ||
          st.st_uid != ::geteuid() || st.st_nlink != 1) {
        spdlog::warn("new backing object {} was replaced before its chown", name);
        return;
      }
      auto opened = backing::OpenObject(dir->fd, name, st.st_dev, st.st_ino);
      if (!opened.ok()) return;
      obj = std::move(*opened);
      fd = obj.get();
    }
    Status s = backing::Chown(fd, owner.uid, owner.gid);
    if (!s.ok()) spdlog::warn("chown of new backing object {}: {}", name, s.ToString());
  }

  // Opens the content of a regular file for I/O, once per inode.
  // REQUIRES: inode->mu held.
  Status EnsureContent(Inode* inode) {
    if (inode->content) return Status::Ok();
    Where w = inode->where();
    if (!w.known()) return Status::NotFound("unlinked");
    auto fd = backing::OpenRegular(w.dirfd, w.name, O_RDWR);
    bool writable = true;
    if (!fd.ok()) {
      const int err = ToErrno(fd.status());
      if (err != EACCES && err != EROFS && err != EPERM) return fd.status();
      fd = backing::OpenRegular(w.dirfd, w.name, O_RDONLY);
      writable = false;
      if (!fd.ok()) return fd.status();
    }
    // The name must still be this inode's: a backing name swapped since
    // the lookup opens nothing.
    struct stat st;
    ENVELOPE_RETURN_IF_ERROR(backing::Stat(fd->get(), "", &st));
    if (Replaced(inode, st)) return Status::IoError("the backing name was replaced", ESTALE);
    auto content = shared_ ? shared::OpenContent(volume_, fd->get(), &inode->seen)
                           : volume_->OpenContent(fd->get());
    if (!content.ok()) {
      spdlog::error("cannot open {}: {}", PathForLog(inode), content.status().ToString());
      return content.status();
    }
    inode->content_fd = fd->release();
    inode->content_writable = writable;
    inode->content = std::move(*content);
    return Status::Ok();
  }
  // truncate(2), ftruncate(2), O_TRUNC: POSIX marks mtime and ctime for
  // update even when the size does not change (truncating an empty file),
  // and the backing file may not have changed at all.
  // REQUIRES: inode->mu held, inode->content set.
  Status Truncate(Inode* inode, uint64_t size) {
    return OnContent(inode, shared::LockKind::kExclusive, [&] {
      ENVELOPE_RETURN_IF_ERROR(inode->content->Truncate(size));
      const struct timespec now[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
      if (::futimens(inode->content_fd, now) != 0) return Status::FromErrno("futimens");
      return Status::Ok();
    });
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
  const bool shared_;
  std::atomic<bool> link_refusal_logged_{false};
};

EnvelopeFs* Fs(fuse_req_t req) { return static_cast<EnvelopeFs*>(fuse_req_userdata(req)); }
Inode* Node(fuse_req_t req, fuse_ino_t ino) { return Fs(req)->inodes().Get(ino); }

void ReplyError(fuse_req_t req, const Status& s) { fuse_reply_err(req, ToErrno(s)); }

// ---- lookup, attributes ---------------------------------------------------

void OpInit(void* userdata, fuse_conn_info* conn) {
  // Local POSIX and flock locks (the kernel handles them for one mount).
  conn->want &= ~FUSE_CAP_POSIX_LOCKS;
  conn->want &= ~FUSE_CAP_FLOCK_LOCKS;
  // We transform every byte, so splicing buys nothing.
  conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
  // The kernel applies the caller's umask before it calls us.
  conn->want &= ~FUSE_CAP_DONT_MASK;
  // Never a writeback cache (it is never asked for; with shared storage it
  // would also keep written data from the other mounts for a while).
  if (static_cast<EnvelopeFs*>(userdata)->shared()) conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
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
  // Everything below acts on this descriptor: the object the kernel means,
  // never what its backing name may lead to by now (a symlink swapped in
  // would otherwise carry a chmod to its target).
  auto obj = backing::OpenObject(w.dirfd, w.name, inode->dev, inode->ino);
  if (!obj.ok()) return ReplyError(req, obj.status());
  if (to_set & FUSE_SET_ATTR_MODE) {
    if (S_ISLNK(inode->type)) return (void)fuse_reply_err(req, EOPNOTSUPP);
    Status s = backing::Chmod(obj->get(), attr->st_mode & 07777);
    if (!s.ok()) return ReplyError(req, s);
  }
  if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : static_cast<uid_t>(-1);
    gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : static_cast<gid_t>(-1);
    if (S_ISLNK(inode->type) && !w.name.empty()) {
      // A long target's file follows its symlink's owner (DropSymlinkTarget
      // goes by it).
      struct stat before;
      auto raw = backing::ReadLink(w.dirfd, w.name, format::kMaxInlineTargetInBytes);
      if (raw.ok() && backing::Stat(obj->get(), "", &before).ok()) {
        (void)fs->volume()->ChownSymlinkTarget(*raw, before.st_uid, uid, gid);
      }
    }
    Status s = backing::Chown(obj->get(), uid, gid);
    if (!s.ok()) return ReplyError(req, s);
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
    Status s = backing::SetTimes(obj->get(), tv);
    if (!s.ok()) return ReplyError(req, s);
  }
  OpGetattr(req, ino, nullptr);
}

// ---- creating and removing names ------------------------------------------

// The first steps of every operation that adds a name: encrypt it and, for a
// long name, write its side file before the entry exists.
StatusOr<format::EncodedName> PrepareNewName(EnvelopeFs* fs, Inode* dir, const char* name) {
  ENVELOPE_ASSIGN_OR_RETURN(format::EncodedName en, fs->Encode(dir, name));
  ENVELOPE_RETURN_IF_ERROR(fs->volume()->WriteLongNameFile(dir->fd, en));
  return en;
}

// After creating the entry failed with `err`: drop the side file, unless the
// name was taken (then the side file is the existing entry's), and reply.
void FailNewName(fuse_req_t req, EnvelopeFs* fs, Inode* dir, const format::EncodedName& en,
                 int err) {
  if (err != EEXIST) fs->volume()->RemoveLongNameFile(dir->fd, en);
  fuse_reply_err(req, err);
}

// After the backing object `backing` was created in `dir` (and given to
// its owner): look it up and reply.
void ReplyNewEntry(fuse_req_t req, Inode* dir, const std::string& backing) {
  fuse_entry_param e;
  Status s = Fs(req)->LookupBacking(dir, backing, &e);
  if (!s.ok()) return ReplyError(req, s);
  fuse_reply_entry(req, &e);
}

void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  EnvelopeFs* fs = Fs(req);
  Inode* dir = Node(req, parent);
  auto en = PrepareNewName(fs, dir, name);
  if (!en.ok()) return ReplyError(req, en.status());
  const NewOwner owner = fs->OwnerForNew(req, dir);
  // Created private and checked to be the directory just made, given its
  // id file, then set to the exact mode asked for (mkdir(path, 0151) shows
  // 0151) plus the setgid bit a setgid parent passes on.
  auto made = backing::MakeDirectory(dir->fd, en->backing_name);
  if (!made.ok()) return FailNewName(req, fs, dir, *en, ToErrno(made.status()));
  backing::DirIdAside created;
  created.dir = std::move(*made);
  struct stat st;
  Status s = fs->volume()->CreateDirId(created.dir.get());
  if (s.ok()) s = backing::Stat(created.dir.get(), "", &st);
  if (s.ok() && ::fchmod(created.dir.get(), (mode & 07777) | (st.st_mode & S_ISGID)) != 0) {
    s = Status::FromErrno("fchmod");
  }
  if (!s.ok()) {
    (void)backing::Unlink(created.dir.get(), std::string(format::kDirIdFileName));
    (void)backing::RemoveDirectory(dir->fd, en->backing_name, created);
    fs->volume()->RemoveLongNameFile(dir->fd, *en);
    return ReplyError(req, s);
  }
  fs->GiveToOwner(owner, dir, en->backing_name, created.dir.get(), S_IFDIR);
  ReplyNewEntry(req, dir, en->backing_name);
}

void OpMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  EnvelopeFs* fs = Fs(req);
  Inode* dir = Node(req, parent);
  auto en = PrepareNewName(fs, dir, name);
  if (!en.ok()) return ReplyError(req, en.status());
  const NewOwner owner = fs->OwnerForNew(req, dir);
  if (S_ISREG(mode)) {
    // A regular file needs its header and DEK like any created file.
    auto fd = backing::CreateRegular(dir->fd, en->backing_name, mode & 07777, /*exclusive=*/true);
    if (!fd.ok()) return FailNewName(req, fs, dir, *en, ToErrno(fd.status()));
    shared::BackingStamp unused;
    auto content = fs->shared() ? shared::CreateContent(fs->volume(), fd->get(), &unused)
                                : fs->volume()->CreateContent(fd->get());
    if (!content.ok()) {
      (void)backing::Unlink(dir->fd, en->backing_name);
      fs->volume()->RemoveLongNameFile(dir->fd, *en);
      return ReplyError(req, content.status());
    }
    fs->GiveToOwner(owner, dir, en->backing_name, fd->get(), S_IFREG);
  } else {
    Status s = backing::MakeNode(dir->fd, en->backing_name, mode, rdev);
    if (!s.ok()) return FailNewName(req, fs, dir, *en, ToErrno(s));
    fs->GiveToOwner(owner, dir, en->backing_name, -1, mode & S_IFMT);
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
  const NewOwner owner = fs->OwnerForNew(req, dir);
  Status s = fs->volume()->CreateSymlink(target, dir->fd, en->backing_name, owner.uid, owner.gid);
  if (!s.ok()) return FailNewName(req, fs, dir, *en, ToErrno(s));
  fs->GiveToOwner(owner, dir, en->backing_name, -1, S_IFLNK);
  ReplyNewEntry(req, dir, en->backing_name);
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  auto target = Fs(req)->ReadLink(Node(req, ino));
  if (!target.ok()) return ReplyError(req, target.status());
  fuse_reply_readlink(req, target->c_str());
}

void OpLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  EnvelopeFs* fs = Fs(req);
  if (fs->shared()) {
    fs->LogLinkRefused();
    return (void)fuse_reply_err(req, EPERM);
  }
  Inode* inode = Node(req, ino);
  Inode* dir = Node(req, newparent);
  auto en = PrepareNewName(fs, dir, newname);
  if (!en.ok()) return ReplyError(req, en.status());
  const Where w = fs->Locate(inode);
  if (!w.known()) return (void)fuse_reply_err(req, ENOENT);
  Status s = backing::Link(w.dirfd, w.name, dir->fd, en->backing_name);
  if (!s.ok()) return FailNewName(req, fs, dir, *en, ToErrno(s));
  // The new name must be this inode's: a source name swapped since the
  // lookup must not give anyone a link to some other file.
  struct stat st;
  s = backing::Stat(dir->fd, en->backing_name, &st);
  if (s.ok() && EnvelopeFs::Replaced(inode, st)) {
    (void)backing::Unlink(dir->fd, en->backing_name);
    return FailNewName(req, fs, dir, *en, ESTALE);
  }
  // No chown: a new link to an existing file keeps its owner.
  ReplyNewEntry(req, dir, en->backing_name);
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  EnvelopeFs* fs = Fs(req);
  Inode* dir = Node(req, parent);
  auto en = fs->Encode(dir, name);
  if (!en.ok()) return ReplyError(req, en.status());
  // The id file goes first, through a descriptor of the directory itself;
  // it comes back if the rmdir fails (e.g. the directory is busy).
  auto aside = backing::SetDirIdAside(dir->fd, en->backing_name, format::kDirIdFileName,
                                      format::kDirIdSizeInBytes);
  if (!aside.ok()) return ReplyError(req, aside.status());
  Status s = backing::RemoveDirectory(dir->fd, en->backing_name, *aside);
  if (!s.ok()) {
    backing::RestoreDirId(*aside, format::kDirIdFileName);
    return ReplyError(req, s);
  }
  fs->volume()->RemoveLongNameFile(dir->fd, *en);
  fuse_reply_err(req, 0);
}

// The raw backing target of a symlink about to lose its last link (its
// long-target file goes with it), else "".
std::string LastLinkTarget(int dirfd, const std::string& backing, const struct stat& st) {
  if (!S_ISLNK(st.st_mode) || st.st_nlink != 1) return "";
  auto raw = backing::ReadLink(dirfd, backing, format::kMaxInlineTargetInBytes);
  return raw.ok() ? *raw : "";
}

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  EnvelopeFs* fs = Fs(req);
  Inode* dir = Node(req, parent);
  auto en = fs->Encode(dir, name);
  if (!en.ok()) return ReplyError(req, en.status());
  struct stat st;
  const bool known = backing::Stat(dir->fd, en->backing_name, &st).ok();
  // With shared storage the symlink is held across the unlink, which may
  // remove another object (shared::LastLink).
  const bool guarded = fs->shared() && known;
  const std::string raw_target =
      known && !guarded ? LastLinkTarget(dir->fd, en->backing_name, st) : "";
  const shared::LastLink last =
      guarded ? shared::LastLink::Before(dir->fd, en->backing_name, st) : shared::LastLink();
  Status s = backing::Unlink(dir->fd, en->backing_name);
  if (!s.ok()) return ReplyError(req, s);
  fs->volume()->RemoveLongNameFile(dir->fd, *en);
  if (known) {
    fs->volume()->DropSymlinkTarget(guarded ? last.TargetToDrop() : raw_target, st.st_uid);
    // Other links of the file must not be reached through this name any more.
    fs->inodes().Unbind(st, dir, en->backing_name);
  }
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
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT)) {
    return (void)fuse_reply_err(req, EINVAL);
  }
  // RENAME_WHITEOUT (overlayfs upper directories): the backing rename leaves
  // a whiteout, a 0:0 character device, under the old backing name, which
  // decodes to the old plaintext name like any device node; a long old name
  // keeps its side file for it.
  const bool whiteout = flags & RENAME_WHITEOUT;
  // Side files belong to names, not objects: an exchange keeps both names,
  // a move needs the new name's side file before and drops the old one after.
  const bool exchange = flags & RENAME_EXCHANGE;
  // The object a plain rename replaces loses that name.
  struct stat victim;
  const bool replaces = !exchange && backing::Stat(to_dir->fd, to->backing_name, &victim).ok();
  const bool guarded = fs->shared() && replaces;  // as in OpUnlink
  const std::string victim_target =
      replaces && !guarded ? LastLinkTarget(to_dir->fd, to->backing_name, victim) : "";
  const shared::LastLink victim_last =
      guarded ? shared::LastLink::Before(to_dir->fd, to->backing_name, victim)
              : shared::LastLink();
  if (!exchange) {
    Status s = fs->volume()->WriteLongNameFile(to_dir->fd, *to);
    if (!s.ok()) return ReplyError(req, s);
  }
  Status s = backing::Rename(from_dir->fd, from->backing_name, to_dir->fd, to->backing_name, flags);
  if (!s.ok()) {
    int err = ToErrno(s);
    // Replacing a directory that is empty to the user: the backing one
    // still holds its id file, which must go first (through a descriptor
    // of that directory) and comes back if the rename fails after all.
    if ((err == ENOTEMPTY || err == EEXIST) && !exchange && !(flags & RENAME_NOREPLACE)) {
      auto aside = backing::SetDirIdAside(to_dir->fd, to->backing_name, format::kDirIdFileName,
                                          format::kDirIdSizeInBytes);
      if (aside.ok()) {
        s = backing::Rename(from_dir->fd, from->backing_name, to_dir->fd, to->backing_name, flags);
        err = ToErrno(s);
        if (!s.ok()) backing::RestoreDirId(*aside, format::kDirIdFileName);
      }
    }
    if (!s.ok()) return (void)fuse_reply_err(req, err);
  }
  if (!exchange && !whiteout && from->backing_name != to->backing_name) {
    fs->volume()->RemoveLongNameFile(from_dir->fd, *from);
  }
  // Non-directories are found by (directory, name): follow the move.
  struct stat st;
  if (backing::Stat(to_dir->fd, to->backing_name, &st).ok()) {
    if (replaces && (victim.st_dev != st.st_dev || victim.st_ino != st.st_ino)) {
      fs->inodes().Unbind(victim, to_dir, to->backing_name);
      fs->volume()->DropSymlinkTarget(guarded ? victim_last.TargetToDrop() : victim_target,
                                      victim.st_uid);
    }
    fs->inodes().Rebind(st, from_dir, from->backing_name, to_dir, to->backing_name);
  }
  if (exchange && backing::Stat(from_dir->fd, from->backing_name, &st).ok()) {
    fs->inodes().Rebind(st, to_dir, to->backing_name, from_dir, from->backing_name);
  }
  fuse_reply_err(req, 0);
}

// ---- directories ----------------------------------------------------------

// Decodes the listing of `dir` into handle->entries, "." and ".." first.
Status ListDirectory(EnvelopeFs* fs, Inode* dir, DirHandle* handle) {
  auto id = fs->DirIdOf(dir);
  if (!id.ok()) return id.status();
  auto opened = backing::OpenDir(dir->fd, "");
  if (!opened.ok()) return opened.status();
  const int fd = opened->release();
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    Status s = Status::FromErrno("fdopendir");
    ::close(fd);
    return s;
  }
  handle->entries.clear();
  // glibc skips entries whose inode number is 0, so "." and ".." carry the
  // backing directories' numbers.
  struct stat dot, dotdot;
  ino_t dot_ino = backing::Stat(fd, "", &dot).ok() ? dot.st_ino : 1;
  ino_t dotdot_ino = backing::StatParent(fd, &dotdot).ok() ? dotdot.st_ino : 1;
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
  return Status::Ok();
}

// The listing is made by the first readdir from offset 0, not here: a
// directory opened, then written to, then read (or rewound, rewinddir(3),
// which reads from offset 0 again) must show the names added since
// (POSIX; fstests generic/471). The directory's id is checked now so that
// a damaged directory fails at opendir.
void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto id = Fs(req)->DirIdOf(Node(req, ino));
  if (!id.ok()) return ReplyError(req, id.status());
  auto handle = std::make_unique<DirHandle>();
  fi->fh = reinterpret_cast<uint64_t>(handle.release());
  fi->cache_readdir = 0;
  fuse_reply_open(req, fi);
}

void DoReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi,
               bool plus) {
  EnvelopeFs* fs = Fs(req);
  auto* handle = reinterpret_cast<DirHandle*>(fi->fh);
  Inode* dir = Node(req, ino);
  // Offset 0 (a first read, or one after rewinddir) lists the directory as
  // it is now. The kernel serialises readdir calls on one handle.
  if (offset == 0) {
    Status s = ListDirectory(fs, dir, handle);
    if (!s.ok()) return ReplyError(req, s);
  }
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
  auto fd = backing::OpenDir(Node(req, ino)->fd, "");
  if (!fd.ok()) return ReplyError(req, fd.status());
  int rc = datasync ? ::fdatasync(fd->get()) : ::fsync(fd->get());
  fuse_reply_err(req, rc == 0 ? 0 : errno);
}

// ---- regular files --------------------------------------------------------

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              fuse_file_info* fi) {
  EnvelopeFs* fs = Fs(req);
  Inode* dir = Node(req, parent);
  auto en = PrepareNewName(fs, dir, name);
  if (!en.ok()) return ReplyError(req, en.status());
  const NewOwner owner = fs->OwnerForNew(req, dir);
  // Exclusive first, so that we know whether this call made the file: only
  // then does it change owner, or go again if its key cannot be made.
  bool created = true;
  auto opened = backing::CreateRegular(dir->fd, en->backing_name, mode & 07777, /*exclusive=*/true);
  if (!opened.ok() && ToErrno(opened.status()) == EEXIST && !(fi->flags & O_EXCL)) {
    created = false;
    opened = backing::OpenRegular(dir->fd, en->backing_name, O_RDWR);
  }
  if (!opened.ok()) {
    // An existing entry keeps its side file.
    if (!created) return ReplyError(req, opened.status());
    return FailNewName(req, fs, dir, *en, ToErrno(opened.status()));
  }
  const int fd = opened->release();
  struct stat st;
  if (!backing::Stat(fd, "", &st).ok()) st.st_size = 1;  // never treated as new
  shared::BackingStamp seen;
  StatusOr<std::unique_ptr<format::ContentFile>> content = Status::Internal("unset");
  if (fs->shared()) {
    // Only a file this call made gets a header: an empty file someone else
    // made may be another mount's create whose header is on its way.
    content = created ? shared::CreateContent(fs->volume(), fd, &seen)
                      : shared::OpenContent(fs->volume(), fd, &seen);
  } else {
    content = st.st_size == 0 ? fs->volume()->CreateContent(fd) : fs->volume()->OpenContent(fd);
  }
  if (!content.ok()) {
    ::close(fd);
    if (created) {
      (void)backing::Unlink(dir->fd, en->backing_name);
      fs->volume()->RemoveLongNameFile(dir->fd, *en);
    }
    spdlog::error("create failed: {}", content.status().ToString());
    return ReplyError(req, content.status());
  }
  if (created) fs->GiveToOwner(owner, dir, en->backing_name, fd, S_IFREG);
  fuse_entry_param e;
  Status s = fs->LookupBacking(dir, en->backing_name, &e);
  if (s.ok() && (e.attr.st_dev != st.st_dev || e.attr.st_ino != st.st_ino)) {
    // The name was swapped since the create: this descriptor is not its.
    fs->inodes().Forget(fs->inodes().Get(e.ino), 1);
    s = Status::IoError("the backing name was replaced", ESTALE);
  }
  if (!s.ok()) {
    content->reset();
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
      inode->seen = seen;
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
  // With shared storage no file data is cached in the kernel: every read
  // comes here and sees what the other mounts wrote.
  fi->direct_io = fs->shared();
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
  fi->direct_io = fs->shared();  // as in OpCreate
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
  EnvelopeFs* fs = Fs(req);
  if (fs->shared()) {
    std::lock_guard lock(inode->mu);  // one request per file at a time
    if (inode->content) {
      Status s = fs->OnContent(inode, shared::LockKind::kShared, [&] {
        n = inode->content->Read(static_cast<uint64_t>(off), buf);
        return n.status();
      });
      if (!s.ok()) n = s;
    }
  } else {
    std::shared_lock lock(inode->mu);  // reads of one file run in parallel
    if (inode->content) n = inode->content->Read(static_cast<uint64_t>(off), buf);
  }
  if (!n.ok()) {
    spdlog::error("read of {} at offset {}: {}", fs->PathForLog(inode), off,
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
      s = Fs(req)->OnContent(inode, shared::LockKind::kExclusive, [&] {
        return inode->content->Write(static_cast<uint64_t>(off),
                                     ByteView(reinterpret_cast<const uint8_t*>(data), size));
      });
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

// fallocate(2): mode 0 and KEEP_SIZE reserve space, PUNCH_HOLE (always with
// KEEP_SIZE, as the kernel insists) frees it, ZERO_RANGE zeros with space
// kept (docs/FORMAT.md §6, "Holes"); every other mode is EOPNOTSUPP, as on
// a filesystem without it.
void OpFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                 fuse_file_info*) {
  const bool keep_size = (mode & FALLOC_FL_KEEP_SIZE) != 0;
  const int kind = mode & ~FALLOC_FL_KEEP_SIZE;
  if (kind != 0 && kind != FALLOC_FL_PUNCH_HOLE && kind != FALLOC_FL_ZERO_RANGE) {
    return (void)fuse_reply_err(req, EOPNOTSUPP);
  }
  if (kind == FALLOC_FL_PUNCH_HOLE && !keep_size) return (void)fuse_reply_err(req, EOPNOTSUPP);
  if (offset < 0 || length <= 0) return (void)fuse_reply_err(req, EINVAL);
  Inode* inode = Node(req, ino);
  Status s;
  {
    std::lock_guard lock(inode->mu);
    const auto off = static_cast<uint64_t>(offset);
    const auto len = static_cast<uint64_t>(length);
    if (!inode->content) {
      s = Status::Internal("BUG: fallocate without content");
    } else {
      s = Fs(req)->OnContent(inode, shared::LockKind::kExclusive, [&] {
        format::ContentFile* content = inode->content.get();
        if (kind == FALLOC_FL_PUNCH_HOLE) return content->PunchHole(off, len);
        if (kind == FALLOC_FL_ZERO_RANGE) return content->ZeroRange(off, len, keep_size);
        return content->Allocate(off, len, keep_size);
      });
    }
  }
  if (!s.ok()) {
    if (s.code() != StatusCode::kIoError) {
      spdlog::error("fallocate of {}: {}", Fs(req)->PathForLog(inode), s.ToString());
    }
    return ReplyError(req, s);
  }
  fuse_reply_err(req, 0);
}

// lseek(2) SEEK_DATA and SEEK_HOLE (the kernel answers the other whence
// values itself), at chunk granularity.
void OpLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info*) {
  if (whence != SEEK_DATA && whence != SEEK_HOLE) return (void)fuse_reply_err(req, EINVAL);
  if (off < 0) return (void)fuse_reply_err(req, ENXIO);
  Inode* inode = Node(req, ino);
  StatusOr<uint64_t> at = Status::Internal("BUG: lseek without content");
  {
    std::lock_guard lock(inode->mu);
    if (inode->content) {
      Status s = Fs(req)->OnContent(inode, shared::LockKind::kShared, [&] {
        at = whence == SEEK_DATA ? inode->content->SeekData(static_cast<uint64_t>(off))
                                 : inode->content->SeekHole(static_cast<uint64_t>(off));
        return at.status();
      });
      if (!s.ok()) at = s;
    }
  }
  if (!at.ok()) return ReplyError(req, at.status());
  fuse_reply_lseek(req, static_cast<off_t>(*at));
}

// Only called without default_permissions, when the caller is the user the
// daemon runs as: the backing object's own answer is the caller's.
void OpAccess(fuse_req_t req, fuse_ino_t ino, int mask) {
  Inode* inode = Node(req, ino);
  const auto w = Fs(req)->Checked(inode, Fs(req)->Locate(inode));
  if (!w.ok()) return ReplyError(req, w.status());
  Status s = backing::Access(w->dirfd, w->name, mask);
  fuse_reply_err(req, s.ok() ? 0 : ToErrno(s));
}

// ---- statfs, xattrs --------------------------------------------------------

// Space in plaintext terms: every C plaintext bytes of a chunk cost C + 28
// backing bytes, so a program that preallocates "all free space" (or checks
// that a file will fit) must see what fits once encrypted.
void OpStatfs(fuse_req_t req, fuse_ino_t) {
  struct statvfs sv;
  if (::fstatvfs(Fs(req)->inodes().root()->fd, &sv) != 0) return (void)fuse_reply_err(req, errno);
  const format::ChunkLayout& layout = Fs(req)->volume()->layout();
  auto plaintext = [&](fsblkcnt_t blocks) {
    return static_cast<fsblkcnt_t>(static_cast<unsigned __int128>(blocks) * layout.chunk_size() /
                                   layout.backing_chunk_size());
  };
  sv.f_blocks = plaintext(sv.f_blocks);
  sv.f_bfree = plaintext(sv.f_bfree);
  sv.f_bavail = plaintext(sv.f_bavail);
  sv.f_namemax = format::kMaxNameInBytes;
  fuse_reply_statfs(req, &sv);
}

// Backing xattr name for a user.* name: user.<base64url(SIV(name))>.
StatusOr<std::string> BackingXattrName(EnvelopeFs* fs, std::string_view name) {
  if (name.rfind(kUserXattrPrefix, 0) != 0) {
    return Status::IoError("only user.* extended attributes are supported", EOPNOTSUPP);
  }
  ENVELOPE_ASSIGN_OR_RETURN(std::string sealed, fs->volume()->names().EncodeXattrName(name));
  return std::string(kUserXattrPrefix) + sealed;
}

void OpSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                int flags) {
  EnvelopeFs* fs = Fs(req);
  Inode* inode = Node(req, ino);
  auto backing = BackingXattrName(fs, name);
  if (!backing.ok()) return ReplyError(req, backing.status());
  auto sealed = fs->volume()->SealXattrValue(name, ByteView(reinterpret_cast<const uint8_t*>(value), size));
  if (!sealed.ok()) return ReplyError(req, sealed.status());
  const auto w = fs->Checked(inode, inode->where());
  if (!w.ok()) return ReplyError(req, w.status());
  Status s = backing::SetXattr(w->dirfd, w->name, *backing, AsBytes(*sealed), flags);
  fuse_reply_err(req, s.ok() ? 0 : ToErrno(s));
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  EnvelopeFs* fs = Fs(req);
  Inode* inode = Node(req, ino);
  auto backing = BackingXattrName(fs, name);
  if (!backing.ok()) {
    return (void)fuse_reply_err(req, ToErrno(backing.status()) == EOPNOTSUPP ? ENODATA : ToErrno(backing.status()));
  }
  std::vector<uint8_t> buf(64 * 1024 + 64);
  const auto w = fs->Checked(inode, inode->where());
  if (!w.ok()) return ReplyError(req, w.status());
  auto n = backing::GetXattr(w->dirfd, w->name, *backing, buf);
  if (!n.ok()) return ReplyError(req, n.status());
  auto value = fs->volume()->OpenXattrValue(name, ByteView(buf.data(), *n));
  if (!value.ok()) return (void)fuse_reply_err(req, EIO);
  if (size == 0) return (void)fuse_reply_xattr(req, value->size());
  if (size < value->size()) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, reinterpret_cast<const char*>(value->data()), value->size());
}

void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  EnvelopeFs* fs = Fs(req);
  Inode* inode = Node(req, ino);
  std::vector<char> buf(64 * 1024);
  const auto w = fs->Checked(inode, inode->where());
  if (!w.ok()) return ReplyError(req, w.status());
  auto n = backing::ListXattr(w->dirfd, w->name, buf.data(), buf.size());
  if (!n.ok()) {
    const int err = ToErrno(n.status());
    return (void)fuse_reply_err(req, err == ENOTSUP ? 0 : err);
  }
  std::string out;
  for (size_t i = 0; i < *n;) {
    std::string_view bname(buf.data() + i);
    i += bname.size() + 1;
    if (bname.rfind(kUserXattrPrefix, 0) != 0) continue;
    auto name = fs->volume()->names().DecodeXattrName(bname.substr(kUserXattrPrefix.size()));
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
  Inode* inode = Node(req, ino);
  const auto w = fs->Checked(inode, inode->where());
  if (!w.ok()) return ReplyError(req, w.status());
  Status s = backing::RemoveXattr(w->dirfd, w->name, *backing);
  fuse_reply_err(req, s.ok() ? 0 : ToErrno(s));
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
  ops.lseek = OpLseek;
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
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd root, backing::OpenRoot(volume->cipherdir()));
  if (options.shared_storage) {
    // Every content request locks its backing file: refuse at once where
    // the backing filesystem cannot (docs/SHARED_STORAGE.md).
    ENVELOPE_ASSIGN_OR_RETURN(
        UniqueFd conf,
        backing::OpenRegular(root.get(), std::string(format::kVolumeConfigFileName), O_RDONLY));
    ENVELOPE_RETURN_IF_ERROR(shared::CheckLocksWork(conf.get()));
    spdlog::info("sharedstorage: entry and attribute timeouts 0, no kernel data cache, every "
                 "content request under the backing file's lock, hard links refused");
  }
  const int root_fd = root.release();  // the inode table's from here on
  // Backing modes are exactly what callers asked for (the kernel has already
  // applied their umask), so ours must not interfere.
  ::umask(0);
  // With shared storage the kernel caches no attribute, entry or negative
  // entry: what another mount changed is seen at the next system call.
  EnvelopeFs fs(volume, root_fd, options.shared_storage ? 0.0 : options.attr_timeout_seconds,
                options.shared_storage);

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
  // libfuse splits -o at commas and takes a backslash as an escape, so a
  // cipherdir path with either keeps its place in fsname (and in mtab).
  std::string fsname = "envelopefs:";
  for (char c : volume->cipherdir()) {
    if (c == ',' || c == '\\') fsname += '\\';
    fsname += c;
  }
  std::string opts = std::string(allow_other ? "default_permissions," : "") + "fsname=" +
                     fsname + ",subtype=envelopefs";
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
