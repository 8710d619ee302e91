// The mount's /dev/fuse channel, read and written through libfuse's custom
// I/O hooks (fuse_session_custom_io) so that the daemon can take on
// FUSE_HANDLE_KILLPRIV_V2, which libfuse 3.14 has no capability bit for
// (docs/BENCHMARKS.md, "FUSE options chosen"; docs/CONFORMANCE.md,
// "Clearing setuid and setgid").
//
// Without it the kernel asks GETXATTR security.capability before every
// write(2), a round trip each, to learn whether the write must drop file
// capabilities. With it the superblock is SB_NOSEC: the kernel asks once
// per inode, and instead flags each WRITE, truncating SETATTR, chown and
// O_TRUNC open whose caller lacks CAP_FSETID, leaving the clearing of
// S_ISUID and S_ISGID to the filesystem. envelopefs stores no
// security.capability (only user.* names), so those two bits are all there
// is to clear.
//
// The channel reads each request before libfuse parses it and records,
// for the thread that will handle it, whether the kernel flagged it
// (KillSuidSgidRequested); it patches the INIT reply libfuse built to ask
// for the capability when the kernel offers it. libfuse's worker threads
// read a request and handle it on the same thread, before reading the
// next, which is what makes the per-thread record the request's.
#ifndef ENVELOPE_FS_FUSE_CHANNEL_H_
#define ENVELOPE_FS_FUSE_CHANNEL_H_

#include <sys/types.h>
#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

struct fuse_session;

namespace envelope::fs {

class FuseChannel {
 public:
  // Installs the hooks on `se`, which fuse_session_mount has mounted; the
  // channel must outlive the session loop. -errno on failure.
  int Attach(fuse_session* se);

  // Whether the INIT reply took FUSE_HANDLE_KILLPRIV_V2 (then the
  // filesystem clears S_ISUID and S_ISGID itself). Set before any other
  // request is read.
  bool kill_priv_v2() const { return kill_priv_v2_.load(std::memory_order_acquire); }

  // For the handler of the request this thread read last: whether the
  // kernel asked for S_ISUID and S_ISGID to be cleared (FUSE_WRITE_KILL_SUIDGID,
  // FATTR_KILL_SUIDGID, FUSE_OPEN_KILL_SUIDGID). Read it on the handler's
  // own thread, before handing work to another.
  static bool KillSuidSgidRequested();

 private:
  static ssize_t Read(int fd, void* buf, size_t len, void* userdata);
  static ssize_t Writev(int fd, struct iovec* iov, int count, void* userdata);
  // Records what the request in buf[0, len) asks for.
  void Inspect(const uint8_t* buf, size_t len);

  // Set while the INIT request is read, used when its reply is written
  // (both before the kernel sends any other request); init_pending_
  // publishes the other two to the thread that writes the reply.
  bool kernel_offers_kill_priv_v2_ = false;
  uint64_t init_unique_ = 0;
  std::atomic<bool> init_pending_{false};
  std::atomic<bool> kill_priv_v2_{false};
  // The hooks get the session's user data (the EnvelopeFs), not the
  // channel: one mount per process, so the channel is found here.
  static std::atomic<FuseChannel*> attached_;
};

}  // namespace envelope::fs

#endif  // ENVELOPE_FS_FUSE_CHANNEL_H_
