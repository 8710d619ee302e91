// The FUSE front end's shared parts (fs/fuse_fs.h is its public face,
// MountAndServe): the filesystem object every operation reaches through
// fuse_req_userdata, the helpers the operation files share, and the
// operations that the one table, in fs/fuse_fs.cc, registers. Included
// only by fs/fuse_*.cc, which with this header are the only code that
// includes fuse_lowlevel.h.
//
// The operations, one group per file:
//   fs/fuse_fs.cc       the operation table, the connection's options, the
//                       mount and the session loop
//   fs/fuse_entries.cc  names in a directory: lookup, forget, mknod, mkdir,
//                       symlink, readlink, link, unlink, rmdir, rename
//   fs/fuse_dirs.cc     directory handles: opendir, readdir, readdirplus,
//                       releasedir, fsyncdir
//   fs/fuse_content.cc  regular-file content: create, open, read, write,
//                       release, fsync, fallocate, lseek (and truncation)
//   fs/fuse_attrs.cc    attributes and extended attributes: getattr,
//                       setattr, access, statfs, the *xattr calls
//
// Callbacks stay thin: helpers return a Status, the callback replies, and
// ToErrno() turns every error into the errno of the reply. Every system
// call on a backing path goes through fs/backing_tree.h; these files make
// none themselves.
//
// Thread safety: one EnvelopeFs serves all of libfuse's worker threads. Its
// own fields are set at construction (link_refusal_logged_ is atomic), the
// inode table is thread-safe, and each inode's state is guarded by its own
// mutexes, with the lock order and the rule of no lock across fuse_reply_*
// given in fs/inode_table.h.
#ifndef ENVELOPE_FS_FUSE_FS_INTERNAL_H_
#define ENVELOPE_FS_FUSE_FS_INTERNAL_H_

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "core/base/status.h"
#include "fs/fuse_channel.h"
#include "fs/serial_worker.h"
#include "core/format/name_codec.h"
#include "fs/inode_table.h"
#include "fs/name_cache.h"
#include "fs/shared_storage.h"
#include "fs/volume.h"

namespace envelope::fs::frontend {

// Who a new object belongs to: -1 where it is to stay as created.
struct NewOwner {
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  bool any() const { return uid != static_cast<uid_t>(-1) || gid != static_cast<gid_t>(-1); }
};

// The filesystem: the volume, the inode table and the mount's settings,
// with the helpers that map an inode to its backing object. Each member
// function is defined beside the operations that use it (noted below).
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
  // Whether the kernel's writeback cache is on (set once by OpInit, before
  // any other request): then the kernel owns a file's size, mtime and
  // ctime while it caches the inode, and sends them in SETATTR.
  bool writeback() const { return writeback_.load(std::memory_order_relaxed); }
  void set_writeback(bool on) { writeback_.store(on, std::memory_order_relaxed); }
  // Whether the kernel left clearing S_ISUID and S_ISGID to us
  // (FUSE_HANDLE_KILLPRIV_V2, fs/fuse_channel.h); known from INIT on.
  bool kill_priv_v2() const { return channel_ != nullptr && channel_->kill_priv_v2(); }
  void set_channel(const FuseChannel* channel) { channel_ = channel; }
  // The session, for notifications to the kernel (set before the loop).
  fuse_session* session() const { return session_; }
  void set_session(fuse_session* se) { session_ = se; }
  // Where requests that wait on the kernel are answered (OpLseek); stopped
  // after the session loop, before the session goes.
  SerialWorker& waiter() { return waiter_; }

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

  // ---- fs/fuse_entries.cc: names

  // Hard links are refused with shared storage (docs/SHARED_STORAGE.md);
  // logged once per mount.
  void LogLinkRefused();

  // The id the names in `dir` are encrypted with: read from its backing
  // directory once, then cached in the inode.
  StatusOr<format::DirId> DirIdOf(Inode* dir);

  // The backing name of `name` in `dir`, writing nothing: from the name
  // cache (a LOOKUP's encoding serves the CREATE, UNLINK or RENAME that
  // follows it), else encrypted and cached.
  StatusOr<format::EncodedName> Encode(Inode* dir, const char* name);

  // Looks up an entry by backing name and fills `e`.
  Status LookupBacking(Inode* parent, const std::string& name, fuse_entry_param* e);
  // Adds the non-directory `name` in `parent` whose stat `st` the caller
  // has (of the descriptor of the file it just created) and fills `e`.
  void AddNonDirectory(Inode* parent, const std::string& name, const struct stat& st,
                       fuse_entry_param* e);

  // The owner a new object in `dir` gets when we are root (a non-root
  // daemon can only create objects it owns): the caller, and the group of
  // a setgid directory (as ext4 does), else the caller's group.
  NewOwner OwnerForNew(fuse_req_t req, Inode* dir);

  // Gives the new object `name` in `dir` (type `type`, S_IFMT bits) to
  // `owner`: through `fd` when the caller holds one, else through an
  // O_PATH descriptor of the object just made (ours, one link, that type).
  void GiveToOwner(const NewOwner& owner, Inode* dir, const std::string& name, int fd, mode_t type);

  // ---- fs/fuse_attrs.cc: attributes

  // `w` (the inode's where() or Locate()), checked with shared storage to
  // still be the inode's own object (ESTALE otherwise): what the calls that
  // act on a backing name (xattrs, access, readlink) use. Without shared
  // storage the check, a stat per call, is not made: there only a local
  // user changes names behind the mount, in a backing directory they own,
  // so such a call reaches an object in that user's directory; Stat, where
  // the check costs nothing, still refuses every other object.
  StatusOr<Where> Checked(Inode* inode, Where w);

  // stat of the backing object, translated to what the mount shows.
  Status Stat(Inode* inode, struct stat* st);

  // Turns a backing stat into what the mount shows: the plaintext size of a
  // file, the plaintext target length of a symlink.
  void ShowStat(Inode* inode, struct stat* st);

  // The plaintext target of the symlink `inode`, read through its recorded
  // name (Checked before and after).
  StatusOr<std::string> ReadLink(Inode* inode);

  // Where the object is now; for a file whose every name is gone but which
  // is still open, its content descriptor (fchmod, fchown, futimens and
  // linkat of an open, unlinked file).
  Where Locate(Inode* inode);

  // ---- fs/fuse_content.cc: content

  // The plaintext path of an inode for a log line ("/docs/a.txt"), or its
  // backing inode number if the path cannot be found.
  std::string PathForLog(Inode* inode);

  // Opens the content of a regular file for I/O, once per inode.
  // REQUIRES: inode->mu held.
  Status EnsureContent(Inode* inode);

  // truncate(2), ftruncate(2), O_TRUNC: POSIX marks mtime and ctime for
  // update even when the size does not change (truncating an empty file),
  // and the backing file may not have changed at all. With the writeback
  // cache the kernel owns those times and sends them: they are left alone.
  // REQUIRES: inode->mu held, inode->content set.
  Status Truncate(Inode* inode, uint64_t size);

  // REQUIRES: inode->mu held.
  void MaybeCloseContent(Inode* inode);

  // ---- fs/fuse_rekey.cc: online re-keying

  // Gives the regular file `inode` a new DEK and re-encrypts its content
  // (fs/rekey.h), in place of its backing object, while its handles stay
  // open; the control xattr kRekeyXattrName asks for it.
  Status Rekey(Inode* inode);

  // The daemon's ids never change: asked once, not twice per create.
  const uid_t euid_ = ::geteuid();
  const gid_t egid_ = ::getegid();
  const bool running_as_root_ = euid_ == 0;

 private:
  // Fills `e` for `inode`, whose backing stat is `st`.
  void FillEntry(Inode* inode, const struct stat& st, fuse_entry_param* e);

  Volume* const volume_;
  InodeTable inodes_;
  // Encoded names by (directory id, name): 512 slots, each under 1 KiB.
  NameCache names_{512};
  const double timeout_;
  const bool shared_;
  std::atomic<bool> link_refusal_logged_{false};
  std::atomic<bool> writeback_{false};
  fuse_session* session_ = nullptr;
  const FuseChannel* channel_ = nullptr;  // set before the loop
  SerialWorker waiter_;
};

// The filesystem and the inode of a request.
inline EnvelopeFs* Fs(fuse_req_t req) { return static_cast<EnvelopeFs*>(fuse_req_userdata(req)); }
inline Inode* Node(fuse_req_t req, fuse_ino_t ino) { return Fs(req)->inodes().Get(ino); }

// Drops the setuid and setgid bits of the regular file behind `objfd`
// (inode `ino`) for the caller of `req` (backing::DropSetIds): `privileged`
// says whether the caller may keep S_ISGID of a file outside its groups
// (CAP_FSETID; known to be absent for the requests the kernel flags, else
// guessed from uid 0). A changed mode is news to the kernel, which cached
// the old one: its attributes of `ino` are invalidated.
Status DropSetIdsFor(fuse_req_t req, fuse_ino_t ino, int objfd, bool privileged);
inline void ReplyError(fuse_req_t req, const Status& s) { fuse_reply_err(req, ToErrno(s)); }

// The first and last steps of every operation that adds a name
// (fs/fuse_entries.cc).
StatusOr<format::EncodedName> PrepareNewName(EnvelopeFs* fs, Inode* dir, const char* name);
void FailNewName(fuse_req_t req, EnvelopeFs* fs, Inode* dir, const format::EncodedName& en,
                 int err);

// The operations, registered in MakeOps (fs/fuse_fs.cc).

// fs/fuse_fs.cc
void OpInit(void* userdata, fuse_conn_info* conn);

// fs/fuse_entries.cc
void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name);
void OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void OpForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets);
void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode);
void OpMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev);
void OpSymlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name);
void OpReadlink(fuse_req_t req, fuse_ino_t ino);
void OpLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname);
void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name);
void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name);
void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned int flags);

// fs/fuse_dirs.cc
void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
void OpReleasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi);
void OpFsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info*);

// fs/fuse_content.cc
void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              fuse_file_info* fi);
void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
void OpRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info*);
void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*);
void OpWrite(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t off,
             fuse_file_info*);
void OpFsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info*);
void OpFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                 fuse_file_info*);
void OpLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info*);

// fs/fuse_attrs.cc
void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*);
void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*);
void OpAccess(fuse_req_t req, fuse_ino_t ino, int mask);
void OpStatfs(fuse_req_t req, fuse_ino_t);
void OpSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                int flags);
void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size);
void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void OpRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name);

}  // namespace envelope::fs::frontend

#endif  // ENVELOPE_FS_FUSE_FS_INTERNAL_H_
