// Names in a directory: lookup and forget, and every operation that adds
// or removes a name (mknod, mkdir, symlink, link, unlink, rmdir, rename),
// with the EnvelopeFs helpers they share: directory ids and name
// encryption, the lookup of a backing entry into the inode table, and the
// owner of a new object. readlink sits beside symlink. The inode table's
// rules for reused numbers and stale names are in fs/inode_table.h.
#include "fs/fuse_fs_internal.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include <spdlog/spdlog.h>

#include "core/base/fd_io.h"
#include "fs/backing_tree.h"
#include "fs/shared_storage.h"

namespace envelope::fs::frontend {

using format::DirId;

void EnvelopeFs::LogLinkRefused() {
  if (!link_refusal_logged_.exchange(true)) {
    spdlog::warn("sharedstorage: hard links are refused (EPERM) on this mount");
  }
}

StatusOr<DirId> EnvelopeFs::DirIdOf(Inode* dir) {
  std::lock_guard lock(dir->mu);
  if (!dir->dir_id) {
    ENVELOPE_ASSIGN_OR_RETURN(UniqueFd fd, backing::OpenDir(dir->fd, ""));
    ENVELOPE_ASSIGN_OR_RETURN(DirId id, volume_->ReadDirId(fd.get()));
    dir->dir_id = id;
  }
  return *dir->dir_id;
}

StatusOr<format::EncodedName> EnvelopeFs::Encode(Inode* dir, const char* name) {
  ENVELOPE_ASSIGN_OR_RETURN(DirId id, DirIdOf(dir));
  if (std::optional<format::EncodedName> hit = names_.Find(id, name)) return std::move(*hit);
  ENVELOPE_ASSIGN_OR_RETURN(format::EncodedName en, volume_->names().EncodeName(name, id));
  names_.Insert(id, name, en);
  return en;
}

Status EnvelopeFs::LookupBacking(Inode* parent, const std::string& name, fuse_entry_param* e) {
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
  FillEntry(inode, st, e);
  return Status::Ok();
}

void EnvelopeFs::AddNonDirectory(Inode* parent, const std::string& name, const struct stat& st,
                                 fuse_entry_param* e) {
  FillEntry(inodes_.Add(parent, name, st, -1), st, e);
}

void EnvelopeFs::FillEntry(Inode* inode, const struct stat& st, fuse_entry_param* e) {
  std::memset(e, 0, sizeof(*e));
  e->ino = inode == inodes_.root() ? FUSE_ROOT_ID : reinterpret_cast<fuse_ino_t>(inode);
  e->attr_timeout = timeout_;
  e->entry_timeout = timeout_;
  // The stat just made is the object's: no second system call.
  e->attr = st;
  ShowStat(inode, &e->attr);
}

NewOwner EnvelopeFs::OwnerForNew(fuse_req_t req, Inode* dir) {
  NewOwner o;
  if (!running_as_root_) return o;
  const fuse_ctx* ctx = fuse_req_ctx(req);
  if (ctx->uid == euid_ && ctx->gid == egid_) return o;
  struct stat parent;
  const bool setgid = backing::Stat(dir->fd, "", &parent).ok() && (parent.st_mode & S_ISGID);
  // The backing object already has the setgid directory's group (the
  // backing filesystem gave it), and a new object is already ours.
  if (ctx->uid != euid_) o.uid = ctx->uid;
  if (!setgid && ctx->gid != egid_) o.gid = ctx->gid;
  return o;
}

void EnvelopeFs::GiveToOwner(const NewOwner& owner, Inode* dir, const std::string& name, int fd,
                             mode_t type) {
  if (!owner.any()) return;
  UniqueFd obj;
  if (fd < 0) {
    struct stat st;
    if (!backing::Stat(dir->fd, name, &st).ok() || (st.st_mode & S_IFMT) != type ||
        st.st_uid != euid_ || st.st_nlink != 1) {
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

// ---- lookup --------------------------------------------------------------

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

// ---- creating and removing names -----------------------------------------

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

namespace {

// After the backing object `backing` was created in `dir` (and given to
// its owner): look it up and reply.
void ReplyNewEntry(fuse_req_t req, Inode* dir, const std::string& backing) {
  fuse_entry_param e;
  Status s = Fs(req)->LookupBacking(dir, backing, &e);
  if (!s.ok()) return ReplyError(req, s);
  fuse_reply_entry(req, &e);
}

// The raw backing target of a symlink about to lose its last link (its
// long-target file goes with it), else "".
std::string LastLinkTarget(int dirfd, const std::string& backing, const struct stat& st) {
  if (!S_ISLNK(st.st_mode) || st.st_nlink != 1) return "";
  auto raw = backing::ReadLink(dirfd, backing, format::kMaxInlineTargetInBytes);
  return raw.ok() ? *raw : "";
}

}  // namespace

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

}  // namespace envelope::fs::frontend
