// Attributes and extended attributes: getattr, setattr (mode, owner,
// size, times), access, statfs and the *xattr calls, with the EnvelopeFs
// helpers that stat an inode's backing object, show it as the mount does
// (plaintext sizes) and check a recorded name before a call acts on it.
#include "fs/fuse_fs_internal.h"

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/spdlog.h>

#include "core/base/fd_io.h"
#include "fs/backing_tree.h"
#include "fs/rekey.h"
#include "fs/shared_storage.h"

namespace envelope::fs::frontend {

namespace {

constexpr std::string_view kUserXattrPrefix = "user.";

// Backing xattr name for a user.* name: user.<base64url(SIV(name))>.
StatusOr<std::string> BackingXattrName(EnvelopeFs* fs, std::string_view name) {
  if (name.rfind(kUserXattrPrefix, 0) != 0) {
    return Status::IoError("only user.* extended attributes are supported", EOPNOTSUPP);
  }
  ENVELOPE_ASSIGN_OR_RETURN(std::string sealed, fs->volume()->names().EncodeXattrName(name));
  return std::string(kUserXattrPrefix) + sealed;
}

}  // namespace

Status DropSetIdsFor(fuse_req_t req, fuse_ino_t ino, int objfd, bool privileged) {
  auto changed = backing::DropSetIds(objfd, [&](gid_t gid) {
    if (privileged || fuse_req_ctx(req)->gid == gid) return true;
    std::vector<gid_t> groups(64);
    int n = fuse_req_getgroups(req, static_cast<int>(groups.size()), groups.data());
    if (n > static_cast<int>(groups.size())) {
      groups.resize(static_cast<size_t>(n));
      n = fuse_req_getgroups(req, n, groups.data());
    }
    // Groups that cannot be read count as none: the bit goes.
    for (int i = 0; i < n && i < static_cast<int>(groups.size()); ++i) {
      if (groups[static_cast<size_t>(i)] == gid) return true;
    }
    return false;
  });
  if (!changed.ok()) return changed.status();
  // Attributes only (a negative offset); nothing here waits on the kernel.
  if (*changed) (void)fuse_lowlevel_notify_inval_inode(Fs(req)->session(), ino, -1, 0);
  return Status::Ok();
}

StatusOr<Where> EnvelopeFs::Checked(Inode* inode, Where w) {
  if (!w.known()) return Status::NotFound("unlinked");
  if (shared_ && !w.name.empty()) {
    struct stat st;
    ENVELOPE_RETURN_IF_ERROR(backing::Stat(w.dirfd, w.name, &st));
    if (Replaced(inode, st)) return Status::IoError("the backing name was replaced", ESTALE);
  }
  return w;
}

Status EnvelopeFs::Stat(Inode* inode, struct stat* st) {
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

void EnvelopeFs::ShowStat(Inode* inode, struct stat* st) {
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

StatusOr<std::string> EnvelopeFs::ReadLink(Inode* inode) {
  ENVELOPE_ASSIGN_OR_RETURN(Where w, Checked(inode, inode->where()));
  auto target = volume_->ReadSymlink(w.dirfd, w.name);
  // With shared storage: and still the inode's after the read.
  ENVELOPE_RETURN_IF_ERROR(Checked(inode, w).status());
  return target;
}

Where EnvelopeFs::Locate(Inode* inode) {
  Where w = inode->where();
  if (w.known()) return w;
  std::lock_guard lock(inode->mu);
  if (inode->content_fd >= 0) return Where{inode->content_fd, ""};
  return w;
}

// ---- attributes ----------------------------------------------------------

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  struct stat st;
  Status s = Fs(req)->Stat(Node(req, ino), &st);
  if (!s.ok()) return ReplyError(req, s);
  fuse_reply_attr(req, &st, Fs(req)->timeout());
}

void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  EnvelopeFs* fs = Fs(req);
  Inode* inode = Node(req, ino);
  // A chown, or a truncate by a caller without CAP_FSETID, drops the
  // setuid and setgid bits (FUSE_HANDLE_KILLPRIV_V2: FATTR_KILL_SUIDGID).
  const bool drop_set_ids = fs->kill_priv_v2() && FuseChannel::KillSuidSgidRequested();
  const Where w = fs->Locate(inode);
  constexpr int kTimes = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
                         FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME;
  if (!w.known() && (to_set & ~kTimes) == 0) {
    // The times of a file whose last name is gone and that nobody holds
    // open: the kernel's writeback cache sends them when it evicts the
    // inode after the unlink. There is nothing left to stamp, and an error
    // would surface in the next syncfs(2) of the whole mount.
    struct stat st = {};
    st.st_ino = inode->ino;
    st.st_mode = inode->type;
    st.st_atim = attr->st_atim;
    st.st_mtim = attr->st_mtim;
    st.st_ctim = attr->st_ctim;
    return (void)fuse_reply_attr(req, &st, 0.0);
  }
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
  if (drop_set_ids && S_ISREG(inode->type)) {
    // The kernel flags every chown, privileged or not, and a truncate only
    // by a caller without CAP_FSETID.
    const bool chown = (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) != 0;
    Status s = DropSetIdsFor(req, ino, obj->get(), chown && fuse_req_ctx(req)->uid == 0);
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
    Status s;
    {
      // Never between a WRITE's write and its restoring the mtime (with
      // the writeback cache, OpWrite).
      std::lock_guard lock(inode->mu);
      s = backing::SetTimes(obj->get(), tv);
    }
    if (!s.ok()) return ReplyError(req, s);
  }
  OpGetattr(req, ino, nullptr);
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

// ---- statfs, xattrs ------------------------------------------------------

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

void OpSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                int flags) {
  EnvelopeFs* fs = Fs(req);
  Inode* inode = Node(req, ino);
  if (std::string_view(name) == kRekeyXattrName) {
    Status s = fs->Rekey(inode);
    if (!s.ok() && ToErrno(s) != EMLINK) {
      spdlog::error("rekey of {}: {}", fs->PathForLog(inode), s.ToString());
    }
    return (void)fuse_reply_err(req, s.ok() ? 0 : ToErrno(s));
  }
  auto backing = BackingXattrName(fs, name);
  if (!backing.ok()) return ReplyError(req, backing.status());
  auto sealed = fs->volume()->SealXattrValue(name, ByteView(reinterpret_cast<const uint8_t*>(value), size));
  if (!sealed.ok()) return ReplyError(req, sealed.status());
  const auto w = fs->Checked(inode, inode->where());
  if (!w.ok()) return ReplyError(req, w.status());
  Status s = backing::SetXattr(w->dirfd, w->name, inode->dev, inode->ino, *backing, AsBytes(*sealed), flags);
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
  auto n = backing::GetXattr(w->dirfd, w->name, inode->dev, inode->ino, *backing, buf);
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
  auto n = backing::ListXattr(w->dirfd, w->name, inode->dev, inode->ino, buf.data(), buf.size());
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
  Status s = backing::RemoveXattr(w->dirfd, w->name, inode->dev, inode->ino, *backing);
  fuse_reply_err(req, s.ok() ? 0 : ToErrno(s));
}

}  // namespace envelope::fs::frontend
