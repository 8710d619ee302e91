// Regular-file content: create, open, read, write, release, fsync,
// fallocate and lseek (SEEK_DATA, SEEK_HOLE), with the EnvelopeFs helpers
// that open an inode's content state (format::ContentFile: one per inode,
// shared by every open handle), truncate it (for O_TRUNC and setattr) and
// close it after the last handle. With -o sharedstorage every content
// request runs through EnvelopeFs::OnContent (fs/shared_storage.h).
#include "fs/fuse_fs_internal.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "core/base/fd_io.h"
#include "fs/backing_tree.h"
#include "fs/shared_storage.h"

namespace envelope::fs::frontend {

std::string EnvelopeFs::PathForLog(Inode* inode) {
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

Status EnvelopeFs::EnsureContent(Inode* inode) {
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

Status EnvelopeFs::Truncate(Inode* inode, uint64_t size) {
  return OnContent(inode, shared::LockKind::kExclusive, [&] {
    ENVELOPE_RETURN_IF_ERROR(inode->content->Truncate(size));
    // With the writeback cache the kernel stamps the times itself and
    // sends them in this SETATTR when the size changes (after the size, so
    // they win), or later for O_TRUNC; a truncate(2) to the same size then
    // changes no time, as POSIX allows, and neither may we.
    if (writeback()) return Status::Ok();
    const struct timespec now[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
    if (::futimens(inode->content_fd, now) != 0) return Status::FromErrno("futimens");
    return Status::Ok();
  });
}

void EnvelopeFs::MaybeCloseContent(Inode* inode) {
  if (inode->open_count > 0 || !inode->content) return;
  inode->content.reset();
  ::close(inode->content_fd);
  inode->content_fd = -1;
}

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              fuse_file_info* fi) {
  EnvelopeFs* fs = Fs(req);
  // O_TRUNC of an existing file by a caller without CAP_FSETID
  // (FUSE_HANDLE_KILLPRIV_V2).
  const bool drop_set_ids = fs->kill_priv_v2() && FuseChannel::KillSuidSgidRequested();
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
  // A file this call made is empty; only an existing one is asked.
  struct stat st;
  st.st_size = 0;
  if (!created && !backing::Stat(fd, "", &st).ok()) st.st_size = 1;  // never treated as new
  const bool truncate = !created && (fi->flags & O_TRUNC) && st.st_size != 0;
  const bool drop = !created && (fi->flags & O_TRUNC) && drop_set_ids;
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
  Status s;
  if (created) {
    // The descriptor is the object this call made under that name: its
    // stat (header written, owner given) is the entry, with no lookup of
    // the name. A name swapped since is the same as one swapped after any
    // lookup: every later call by name checks the object's identity
    // (ESTALE), and the content goes through this descriptor.
    struct stat now;
    s = backing::Stat(fd, "", &now);
    if (s.ok()) fs->AddNonDirectory(dir, en->backing_name, now, &e);
  } else {
    s = fs->LookupBacking(dir, en->backing_name, &e);
    if (s.ok() && (e.attr.st_dev != st.st_dev || e.attr.st_ino != st.st_ino)) {
      // The name was swapped since the open: this descriptor is not its.
      fs->inodes().Forget(fs->inodes().Get(e.ino), 1);
      s = Status::IoError("the backing name was replaced", ESTALE);
    }
  }
  if (!s.ok()) {
    content->reset();
    ::close(fd);
    return ReplyError(req, s);
  }
  Inode* inode = fs->inodes().Get(e.ino);
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
    if (s.ok() && drop) s = DropSetIdsFor(req, e.ino, inode->content_fd, false);
    ++inode->open_count;
  }
  if (!s.ok()) return ReplyError(req, s);
  // e.attr is the stat made above; only a truncation or a dropped setuid
  // or setgid bit changed it since.
  if (truncate || drop) {
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
  // O_TRUNC by a caller without CAP_FSETID (FUSE_HANDLE_KILLPRIV_V2).
  const bool drop_set_ids = fs->kill_priv_v2() && FuseChannel::KillSuidSgidRequested();
  Status s;
  {
    std::lock_guard lock(inode->mu);
    s = fs->EnsureContent(inode);
    if (s.ok() && (fi->flags & O_ACCMODE) != O_RDONLY && !inode->content_writable) {
      s = Status::IoError("backing file is read-only", EACCES);
    }
    if (s.ok() && (fi->flags & O_TRUNC)) s = fs->Truncate(inode, 0);
    if (s.ok() && (fi->flags & O_TRUNC) && drop_set_ids) {
      s = DropSetIdsFor(req, ino, inode->content_fd, false);
    }
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
  const bool drop_set_ids = Fs(req)->kill_priv_v2() && FuseChannel::KillSuidSgidRequested();
  Status s = Status::Internal("BUG: write without content");
  {
    std::lock_guard lock(inode->mu);
    // Before the data, as ext4 does: a write that cannot drop them fails.
    if (inode->content && drop_set_ids) s = DropSetIdsFor(req, ino, inode->content_fd, false);
    if (inode->content && (!drop_set_ids || s.ok())) {
      // With the writeback cache the kernel owns the mtime: it stamps it at
      // write(2) time and sends it in a SETATTR that may reach us before
      // the WRITE it covers (both are asynchronous). So a WRITE leaves the
      // backing mtime as it was, and only SETATTR moves it (under
      // inode->mu too, so the two never interleave).
      struct stat before;
      const bool keep_mtime = Fs(req)->writeback() && ::fstat(inode->content_fd, &before) == 0;
      s = Fs(req)->OnContent(inode, shared::LockKind::kExclusive, [&] {
        return inode->content->Write(static_cast<uint64_t>(off),
                                     ByteView(reinterpret_cast<const uint8_t*>(data), size));
      });
      if (s.ok() && keep_mtime) {
        const struct timespec times[2] = {{0, UTIME_OMIT}, before.st_mtim};
        if (::futimens(inode->content_fd, times) != 0) s = Status::FromErrno("futimens");
      }
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
      // With FUSE_HANDLE_KILLPRIV_V2 the kernel flags no fallocate for the
      // setuid and setgid bits (it does writes, truncates and chowns): a
      // caller other than root drops them, as ext4's file_modified() does
      // for a caller without CAP_FSETID (docs/CONFORMANCE.md).
      if (Fs(req)->kill_priv_v2() && fuse_req_ctx(req)->uid != 0) {
        s = DropSetIdsFor(req, ino, inode->content_fd, false);
      }
    }
    if (s.ok() && inode->content) {
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
namespace {

void AnswerLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence) {
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

}  // namespace

void OpLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info*) {
  if (whence != SEEK_DATA && whence != SEEK_HOLE) return (void)fuse_reply_err(req, EINVAL);
  if (off < 0) return (void)fuse_reply_err(req, ENXIO);
  EnvelopeFs* fs = Fs(req);
  if (!fs->writeback()) return AnswerLseek(req, ino, off, whence);
  // With the writeback cache, data written but not yet sent to us lives
  // only in the kernel's dirty pages, and the kernel does not write them
  // back before an LSEEK: the answer would skip that data (cp --sparse
  // would lose it). Invalidating the pages from `off` on makes the kernel
  // write the dirty ones back first (and wait for them), so the backing
  // file holds everything when we look. That wait needs other worker
  // threads to serve the WRITEs, so it runs on the waiter thread, never on
  // a worker. It costs the file's cached pages from `off` on, once per
  // SEEK_DATA/SEEK_HOLE.
  fs->waiter().Post([fs, req, ino, off, whence] {
    const int rc = fuse_lowlevel_notify_inval_inode(fs->session(), ino, off, 0);
    if (rc != 0 && rc != -ENOENT) {
      spdlog::error("lseek: cannot write back the kernel's cached pages: {}", std::strerror(-rc));
      return (void)fuse_reply_err(req, EIO);
    }
    AnswerLseek(req, ino, off, whence);
  });
}

}  // namespace envelope::fs::frontend
