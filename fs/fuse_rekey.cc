// Online re-keying through a mount: `envelopefs rekey` on a mounted volume
// sets the control xattr trusted.envelopefs.rekey on each file (the kernel
// lets only CAP_SYS_ADMIN set trusted.* names), and the mount re-keys the
// file itself (fs/rekey.h, RekeyFile) under the inode's lock, so that no
// read or write of the file runs meanwhile and open handles go on with the
// new object: its content state, descriptor and backing inode number are
// swapped in before the lock is released. docs/ROTATION.md, "Re-keying
// file data".
#include "fs/fuse_fs_internal.h"

#include <unistd.h>

#include <mutex>

#include <spdlog/spdlog.h>

#include "fs/backing_tree.h"
#include "fs/rekey.h"

namespace envelope::fs::frontend {

Status EnvelopeFs::Rekey(Inode* inode) {
  if (shared_) {
    return Status::IoError("rekey through a sharedstorage mount is not supported: run it offline",
                           EOPNOTSUPP);
  }
  if (!S_ISREG(inode->type)) return Status::IoError("not a regular file", EINVAL);
  std::unique_lock lock(inode->mu);
  const Where w = inode->where();
  if (!w.known()) return Status::NotFound("unlinked");
  auto done = RekeyFile(volume_, w.dirfd, w.name, inode->dev, inode->ino);
  if (!done.ok()) return done.status();
  if (inode->content) {
    inode->content.reset();
    ::close(inode->content_fd);
    inode->content_fd = done->fd.release();
    inode->content_writable = true;
    inode->content = std::move(done->content);
  }
  inodes_.Renumber(inode, done->st);
  // Durable before the answer: the tool journals the file as done. (The
  // recorded descriptor is O_PATH; fsync wants one opened for reading.)
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd dir, backing::OpenDir(w.dirfd, ""));
  if (::fsync(dir.get()) != 0) return Status::FromErrno("fsync the backing directory");
  return Status::Ok();
}

}  // namespace envelope::fs::frontend
