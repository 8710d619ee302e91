// The mount: the FUSE operation table (the one place every operation is
// registered), the connection's options, and MountAndServe, which opens
// the cipherdir, builds the libfuse arguments and runs the session loop.
// The operations themselves are in fs/fuse_*.cc (fs/fuse_fs_internal.h).
#include "fs/fuse_fs.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "core/base/fd_io.h"
#include "fs/backing_tree.h"
#include "fs/fuse_channel.h"
#include "fs/fuse_fs_internal.h"
#include "fs/shared_storage.h"

namespace envelope::fs {

namespace frontend {

void OpInit(void* userdata, fuse_conn_info* conn) {
  auto* fs = static_cast<EnvelopeFs*>(userdata);
  // Local POSIX and flock locks (the kernel handles them for one mount).
  conn->want &= ~FUSE_CAP_POSIX_LOCKS;
  conn->want &= ~FUSE_CAP_FLOCK_LOCKS;
  // We transform every byte, so splicing buys nothing.
  conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
  // The kernel applies the caller's umask before it calls us.
  conn->want &= ~FUSE_CAP_DONT_MASK;
  // The writeback cache only when asked for (-o writeback_cache, never
  // with shared storage: MountAndServe) and the kernel has it; from here
  // on fs->writeback() says whether it is on.
  if (fs->writeback() && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) {
    conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  } else {
    if (fs->writeback()) spdlog::warn("writeback_cache: the kernel does not offer it");
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
    fs->set_writeback(false);
  }
  // max_write stays libfuse 3.14's default, 1 MiB (its session buffer is
  // 256 pages, and the kernel's max_pages_limit is 256): one WRITE carries
  // up to 256 chunks. max_readahead stays the kernel's (128 KiB, the
  // bdi's read_ahead_kb): the INIT reply can only lower it.
}

namespace {

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

}  // namespace frontend

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
  frontend::EnvelopeFs fs(volume, root_fd,
                          options.shared_storage ? 0.0 : options.attr_timeout_seconds,
                          options.shared_storage);
  fs.set_writeback(options.writeback_cache && !options.shared_storage);

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

  fuse_lowlevel_ops ops = frontend::MakeOps();
  fuse_session* se = fuse_session_new(&args, &ops, sizeof(ops), &fs);
  if (se == nullptr) return Status::InvalidArgument("fuse_session_new failed (bad -o option?)");
  fs.set_session(se);
  if (fuse_set_signal_handlers(se) != 0) {
    fuse_session_destroy(se);
    return Status::Internal("fuse_set_signal_handlers failed");
  }
  if (fuse_session_mount(se, options.mountpoint.c_str()) != 0) {
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return Status::IoError("cannot mount on " + options.mountpoint, EIO);
  }
  // Requests and replies through our hooks: FUSE_HANDLE_KILLPRIV_V2
  // (fs/fuse_channel.h).
  FuseChannel channel;
  if (int rc = channel.Attach(se); rc != 0) {
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return Status::IoError("cannot set up the FUSE channel", -rc);
  }
  fs.set_channel(&channel);
  fuse_daemonize(options.foreground ? 1 : 0);
  fuse_loop_config* config = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(config, options.max_threads);
  fuse_loop_cfg_set_idle_threads(config, 4);
  int rc = fuse_session_loop_mt(se, config);
  fuse_loop_cfg_destroy(config);
  fs.waiter().Stop();
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  fuse_opt_free_args(&args);
  if (rc != 0) return Status::IoError("the FUSE session ended with an error", EIO);
  return Status::Ok();
}

}  // namespace envelope::fs
