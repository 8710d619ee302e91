#include "fs/backing_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <string>
#include <vector>

#include "core/crypto/random.h"

namespace envelope::fs::backing {

namespace {

// Flags of every descriptor of a file we read or write: never through a
// final symlink, never blocking on a FIFO, never a controlling terminal.
constexpr int kFileFlags = O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;

constexpr std::string_view kTempPrefix = ".envelopefs.tmp.";

std::string ProcPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

// One path component: what a name in a directory may be.
Status CheckName(const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
    return Status::InvalidArgument("not a single backing name: \"" + name + "\"");
  }
  return Status::Ok();
}

// ELOOP from O_NOFOLLOW means a symlink sits where a file or directory
// must be: damage (or an attack), not a loop.
Status OpenError(const std::string& what) {
  if (errno == ELOOP) return Status::Corruption(what + ": a symlink is in the way");
  return Status::FromErrno(what);
}

// A descriptor opened O_NONBLOCK: checks it is a regular file and makes
// its I/O blocking again (for a regular file the flag changes nothing, but
// no caller should inherit it).
Status RequireRegular(int fd, const std::string& what, struct stat* st) {
  if (::fstat(fd, st) != 0) return Status::FromErrno("fstat " + what);
  if (!S_ISREG(st->st_mode)) return Status::Corruption(what + " is not a regular file");
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) return Status::FromErrno("fcntl");
  return Status::Ok();
}

StatusOr<UniqueFd> OpenBeneath(int root_fd, const std::string& path, uint64_t flags) {
  struct open_how how = {};
  how.flags = flags;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  // EAGAIN: a rename somewhere in the tree raced the lookup; try again.
  for (int attempt = 0; attempt < 16; ++attempt) {
    long fd = ::syscall(SYS_openat2, root_fd, path.c_str(), &how, sizeof(how));
    if (fd >= 0) return UniqueFd(static_cast<int>(fd));
    if (errno != EAGAIN && errno != EINTR) break;
  }
  if (errno == ELOOP) {
    return Status::Corruption("open " + path + ": a symlink is in the way");
  }
  return Status::FromErrno("open " + path);
}

// A path for the l*xattr calls, which do not follow a final symlink: the
// directory through its descriptor, then the name. For the directory
// itself, "/." makes the last component the directory rather than the
// /proc magic link (which l*xattr would act on).
StatusOr<std::string> XattrPath(int dirfd, const std::string& name) {
  if (name.empty()) return ProcPath(dirfd) + "/.";
  ENVELOPE_RETURN_IF_ERROR(CheckName(name));
  return ProcPath(dirfd) + "/" + name;
}

// Calls `visit(name)` for each entry of the directory `dirfd` but "." and
// "..", in readdir order, until it returns false. A fresh open file
// description: fdopendir takes it over and moves its offset.
template <typename Visit>
Status ForEachEntry(int dirfd, Visit visit) {
  int fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open directory");
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return Status::FromErrno("fdopendir");
  }
  while (dirent* de = ::readdir(d)) {
    std::string_view n = de->d_name;
    if (n == "." || n == "..") continue;
    if (!visit(n)) break;
  }
  ::closedir(d);
  return Status::Ok();
}

// Whether the directory `dirfd` is empty to the user for rmdir: nothing in
// it but `ignore` (the dir-id file) and stale side-file temporaries
// (`.envelopefs.tmp.*`, left by a crash between writing a side file and
// renaming it into place; docs/FORMAT.md §8.2). If so, those temporaries
// are removed, but only regular files owned by our euid: anything else of
// that name (another user's file, a symlink, a directory) is left where it
// is and the directory is not empty. Nothing is opened or followed: lstat
// and unlink of the name in this directory only. No temporary of ours can
// be in flight here: the kernel holds the directory's lock across the
// rmdir (or rename over it), and every side-file write in it is made under
// that lock too.
StatusOr<bool> EmptyButForStaleTemporaries(int dirfd, std::string_view ignore) {
  std::vector<std::string> stale;
  bool empty = true;
  ENVELOPE_RETURN_IF_ERROR(ForEachEntry(dirfd, [&](std::string_view n) {
    if (!ignore.empty() && n == ignore) return true;
    const std::string name(n);
    struct stat st;
    if (n.size() > kTempPrefix.size() && n.substr(0, kTempPrefix.size()) == kTempPrefix &&
        ::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
        st.st_uid == ::geteuid()) {
      stale.push_back(name);
      return true;
    }
    empty = false;
    return false;
  }));
  if (!empty) return false;
  for (const std::string& n : stale) {
    if (::unlinkat(dirfd, n.c_str(), 0) != 0 && errno != ENOENT) {
      return Status::FromErrno("unlink stale " + n);
    }
  }
  return true;
}

}  // namespace

// ---- descriptors ----------------------------------------------------------

StatusOr<UniqueFd> OpenRoot(const std::string& cipherdir) {
  UniqueFd fd(::open(cipherdir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + cipherdir);
  return fd;
}

StatusOr<UniqueFd> OpenDirBeneath(int root_fd, const std::string& path) {
  return OpenBeneath(root_fd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

StatusOr<UniqueFd> OpenFileBeneath(int root_fd, const std::string& path, int access) {
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd fd,
                            OpenBeneath(root_fd, path, static_cast<uint64_t>(access | kFileFlags)));
  struct stat st;
  ENVELOPE_RETURN_IF_ERROR(RequireRegular(fd.get(), path, &st));
  return fd;
}

StatusOr<UniqueFd> OpenSubdirPath(int dirfd, const std::string& name) {
  ENVELOPE_RETURN_IF_ERROR(CheckName(name));
  UniqueFd fd(::openat(dirfd, name.c_str(), O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return OpenError("open directory");
  return fd;
}

StatusOr<UniqueFd> OpenDir(int dirfd, const std::string& name) {
  if (!name.empty()) ENVELOPE_RETURN_IF_ERROR(CheckName(name));
  UniqueFd fd(::openat(dirfd, name.empty() ? "." : name.c_str(),
                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return OpenError("open directory");
  return fd;
}

StatusOr<UniqueFd> OpenRegular(int dirfd, const std::string& name, int access) {
  ENVELOPE_RETURN_IF_ERROR(CheckName(name));
  UniqueFd fd(::openat(dirfd, name.c_str(), access | kFileFlags));
  if (!fd.valid()) return OpenError("open backing file");
  struct stat st;
  ENVELOPE_RETURN_IF_ERROR(RequireRegular(fd.get(), "backing file", &st));
  return fd;
}

StatusOr<UniqueFd> OpenObject(int dirfd, const std::string& name, dev_t dev, ino_t ino) {
  UniqueFd fd;
  if (name.empty()) {
    fd = UniqueFd(::fcntl(dirfd, F_DUPFD_CLOEXEC, 0));
  } else {
    ENVELOPE_RETURN_IF_ERROR(CheckName(name));
    fd = UniqueFd(::openat(dirfd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  }
  if (!fd.valid()) return Status::FromErrno("open backing object");
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("fstat backing object");
  if (st.st_dev != dev || st.st_ino != ino) {
    // The name now leads somewhere else: act on nothing.
    return Status::IoError("the backing name was replaced", ESTALE);
  }
  return fd;
}

StatusOr<std::string> DescriptorPath(int fd) {
  char buf[PATH_MAX];
  ssize_t n = ::readlink(ProcPath(fd).c_str(), buf, sizeof(buf) - 1);
  if (n <= 0) return Status::FromErrno("readlink");
  return std::string(buf, static_cast<size_t>(n));
}

// ---- attributes -----------------------------------------------------------

Status Stat(int dirfd, const std::string& name, struct stat* st) {
  int rc;
  if (name.empty()) {
    rc = ::fstat(dirfd, st);
  } else {
    ENVELOPE_RETURN_IF_ERROR(CheckName(name));
    rc = ::fstatat(dirfd, name.c_str(), st, AT_SYMLINK_NOFOLLOW);
  }
  if (rc != 0) return Status::FromErrno("stat");
  return Status::Ok();
}

Status StatParent(int dirfd, struct stat* st) {
  if (::fstatat(dirfd, "..", st, AT_SYMLINK_NOFOLLOW) != 0) return Status::FromErrno("stat ..");
  return Status::Ok();
}

Status Chmod(int objfd, mode_t mode) {
  struct stat st;
  if (::fstat(objfd, &st) != 0) return Status::FromErrno("fstat");
  if (S_ISLNK(st.st_mode)) return Status::IoError("a symlink has no mode", EOPNOTSUPP);
  // The magic link of the descriptor is the object itself: nothing left
  // to follow (fchmod does not take an O_PATH descriptor).
  if (::chmod(ProcPath(objfd).c_str(), mode) != 0) return Status::FromErrno("chmod");
  return Status::Ok();
}

StatusOr<bool> DropSetIds(int objfd, const std::function<bool(gid_t)>& caller_in_group) {
  struct stat st;
  if (::fstat(objfd, &st) != 0) return Status::FromErrno("fstat");
  if (!S_ISREG(st.st_mode) || (st.st_mode & (S_ISUID | S_ISGID)) == 0) return false;
  mode_t mode = st.st_mode & 07777;
  mode &= ~S_ISUID;
  if ((mode & S_ISGID) && ((mode & S_IXGRP) || !caller_in_group(st.st_gid))) mode &= ~S_ISGID;
  if (mode == (st.st_mode & 07777)) return false;
  if (::chmod(ProcPath(objfd).c_str(), mode) != 0) return Status::FromErrno("chmod");
  return true;
}

Status Chown(int objfd, uid_t uid, gid_t gid) {
  if (::fchownat(objfd, "", uid, gid, AT_EMPTY_PATH) != 0) return Status::FromErrno("chown");
  return Status::Ok();
}

Status SetTimes(int objfd, const struct timespec times[2]) {
  if (::utimensat(objfd, "", times, AT_EMPTY_PATH) != 0) return Status::FromErrno("utimensat");
  return Status::Ok();
}

Status Access(int dirfd, const std::string& name, int mask) {
  int rc;
  if (name.empty()) {
    rc = ::faccessat(AT_FDCWD, ProcPath(dirfd).c_str(), mask, AT_EACCESS);
  } else {
    ENVELOPE_RETURN_IF_ERROR(CheckName(name));
    rc = ::faccessat(dirfd, name.c_str(), mask, AT_EACCESS | AT_SYMLINK_NOFOLLOW);
  }
  if (rc != 0) return Status::FromErrno("access");
  return Status::Ok();
}

namespace {

// Where an xattr call on the object (dev, ino) goes: `dirfd` itself
// through "/proc/self/fd/N/." with the l* calls (the directory, not the
// magic link), or the checked O_PATH descriptor of `name` through
// "/proc/self/fd/N" with the following calls, which the magic link
// resolves to that very object and no further (a symlink stays itself).
struct XattrTarget {
  UniqueFd held;  // keeps the checked object open for the call
  std::string path;
  bool follow = false;
};

StatusOr<XattrTarget> XattrTargetOf(int dirfd, const std::string& name, dev_t dev, ino_t ino) {
  XattrTarget t;
  if (name.empty()) {
    ENVELOPE_ASSIGN_OR_RETURN(t.path, XattrPath(dirfd, name));
    return t;
  }
  ENVELOPE_ASSIGN_OR_RETURN(t.held, OpenObject(dirfd, name, dev, ino));
  t.path = ProcPath(t.held.get());
  t.follow = true;
  return t;
}

}  // namespace

StatusOr<size_t> GetXattr(int dirfd, const std::string& name, dev_t dev, ino_t ino,
                          const std::string& key, MutableByteView out) {
  ENVELOPE_ASSIGN_OR_RETURN(XattrTarget t, XattrTargetOf(dirfd, name, dev, ino));
  const ssize_t n = t.follow ? ::getxattr(t.path.c_str(), key.c_str(), out.data(), out.size())
                             : ::lgetxattr(t.path.c_str(), key.c_str(), out.data(), out.size());
  if (n < 0) return Status::FromErrno("getxattr");
  return static_cast<size_t>(n);
}

Status SetXattr(int dirfd, const std::string& name, dev_t dev, ino_t ino, const std::string& key,
                ByteView value, int flags) {
  ENVELOPE_ASSIGN_OR_RETURN(XattrTarget t, XattrTargetOf(dirfd, name, dev, ino));
  const int rc =
      t.follow ? ::setxattr(t.path.c_str(), key.c_str(), value.data(), value.size(), flags)
               : ::lsetxattr(t.path.c_str(), key.c_str(), value.data(), value.size(), flags);
  if (rc != 0) return Status::FromErrno("setxattr");
  return Status::Ok();
}

StatusOr<size_t> ListXattr(int dirfd, const std::string& name, dev_t dev, ino_t ino, char* out,
                           size_t size) {
  ENVELOPE_ASSIGN_OR_RETURN(XattrTarget t, XattrTargetOf(dirfd, name, dev, ino));
  const ssize_t n = t.follow ? ::listxattr(t.path.c_str(), out, size)
                             : ::llistxattr(t.path.c_str(), out, size);
  if (n < 0) return Status::FromErrno("listxattr");
  return static_cast<size_t>(n);
}

Status RemoveXattr(int dirfd, const std::string& name, dev_t dev, ino_t ino,
                   const std::string& key) {
  ENVELOPE_ASSIGN_OR_RETURN(XattrTarget t, XattrTargetOf(dirfd, name, dev, ino));
  const int rc = t.follow ? ::removexattr(t.path.c_str(), key.c_str())
                          : ::lremovexattr(t.path.c_str(), key.c_str());
  if (rc != 0) return Status::FromErrno("removexattr");
  return Status::Ok();
}

// ---- creating and removing names ------------------------------------------

StatusOr<UniqueFd> CreateRegular(int dirfd, const std::string& name, mode_t mode, bool exclusive) {
  ENVELOPE_RETURN_IF_ERROR(CheckName(name));
  if (exclusive) {
    // O_CREAT | O_EXCL succeeds only by making a new regular file (any
    // existing name, a symlink or FIFO included, is EEXIST): nothing to
    // check, and no FIFO to block on, so neither O_NONBLOCK nor the fstat
    // and two fcntl calls of RequireRegular (a create is the hot path of
    // untar and fs_mark).
    UniqueFd fd(::openat(dirfd, name.c_str(),
                         O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, mode));
    if (!fd.valid()) return OpenError("create backing file");
    return fd;
  }
  UniqueFd fd(::openat(dirfd, name.c_str(), O_RDWR | O_CREAT | kFileFlags, mode));
  if (!fd.valid()) return OpenError("create backing file");
  struct stat st;
  ENVELOPE_RETURN_IF_ERROR(RequireRegular(fd.get(), "backing file", &st));
  return fd;
}

Status MakeNode(int dirfd, const std::string& name, mode_t mode, dev_t rdev) {
  ENVELOPE_RETURN_IF_ERROR(CheckName(name));
  if (::mknodat(dirfd, name.c_str(), mode, rdev) != 0) return Status::FromErrno("mknod");
  return Status::Ok();
}

Status MakeSymlink(const std::string& target, int dirfd, const std::string& name) {
  ENVELOPE_RETURN_IF_ERROR(CheckName(name));
  if (::symlinkat(target.c_str(), dirfd, name.c_str()) != 0) return Status::FromErrno("symlink");
  return Status::Ok();
}

StatusOr<std::string> ReadLink(int dirfd, const std::string& name, size_t max) {
  ENVELOPE_RETURN_IF_ERROR(CheckName(name));
  std::string buf(max + 1, '\0');
  ssize_t n = ::readlinkat(dirfd, name.c_str(), buf.data(), buf.size());
  if (n < 0) return Status::FromErrno("readlink");
  if (static_cast<size_t>(n) > max) return Status::Corruption("backing symlink target too long");
  buf.resize(static_cast<size_t>(n));
  return buf;
}

Status Link(int from_dirfd, const std::string& from, int to_dirfd, const std::string& to) {
  if (!from.empty()) ENVELOPE_RETURN_IF_ERROR(CheckName(from));
  ENVELOPE_RETURN_IF_ERROR(CheckName(to));
  // Without AT_SYMLINK_FOLLOW: a symlink is linked, not its target.
  if (::linkat(from_dirfd, from.c_str(), to_dirfd, to.c_str(), from.empty() ? AT_EMPTY_PATH : 0) !=
      0) {
    return Status::FromErrno("link");
  }
  return Status::Ok();
}

Status Unlink(int dirfd, const std::string& name) {
  ENVELOPE_RETURN_IF_ERROR(CheckName(name));
  if (::unlinkat(dirfd, name.c_str(), 0) != 0) return Status::FromErrno("unlink");
  return Status::Ok();
}

Status Rename(int from_dirfd, const std::string& from, int to_dirfd, const std::string& to,
              unsigned int flags) {
  ENVELOPE_RETURN_IF_ERROR(CheckName(from));
  ENVELOPE_RETURN_IF_ERROR(CheckName(to));
  if (::renameat2(from_dirfd, from.c_str(), to_dirfd, to.c_str(), flags) != 0) {
    return Status::FromErrno("rename");
  }
  return Status::Ok();
}

StatusOr<UniqueFd> MakeDirectory(int dirfd, const std::string& name) {
  ENVELOPE_RETURN_IF_ERROR(CheckName(name));
  if (::mkdirat(dirfd, name.c_str(), 0700) != 0) return Status::FromErrno("mkdir");
  return OpenCreatedDirectory(dirfd, name);
}

StatusOr<UniqueFd> OpenCreatedDirectory(int dirfd, const std::string& name) {
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd fd, OpenDir(dirfd, name));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("fstat new directory");
  // What mkdir(name, 0700) just made: ours, private (a setgid parent may
  // add S_ISGID), empty. Anything else was put there by someone else.
  if (st.st_uid != ::geteuid() || (st.st_mode & 0777) != 0700 ||
      (st.st_mode & (S_ISUID | S_ISVTX)) != 0) {
    return Status::IoError("the new backing directory was replaced", EIO);
  }
  ENVELOPE_ASSIGN_OR_RETURN(bool empty, DirectoryIsEmpty(fd.get(), ""));
  if (!empty) return Status::IoError("the new backing directory was replaced", EIO);
  return fd;
}

StatusOr<bool> DirectoryIsEmpty(int dirfd, std::string_view ignore) {
  bool empty = true;
  ENVELOPE_RETURN_IF_ERROR(ForEachEntry(dirfd, [&](std::string_view n) {
    if (!ignore.empty() && n == ignore) return true;
    empty = false;
    return false;
  }));
  return empty;
}

StatusOr<DirIdAside> SetDirIdAside(int dirfd, const std::string& name, std::string_view id_name,
                                   size_t id_size) {
  DirIdAside aside;
  ENVELOPE_ASSIGN_OR_RETURN(aside.dir, OpenDir(dirfd, name));
  ENVELOPE_ASSIGN_OR_RETURN(bool empty, EmptyButForStaleTemporaries(aside.dir.get(), id_name));
  if (!empty) return Status::IoError("directory not empty", ENOTEMPTY);
  const std::string id(id_name);
  // Keep the id readable in case the removal fails (the directory is busy):
  // it is put back then. Whatever is there goes; only a real file's bytes
  // are kept.
  auto content = ReadSmallFile(aside.dir.get(), id, id_size);
  if (content.ok()) aside.content = std::move(*content);
  if (::unlinkat(aside.dir.get(), id.c_str(), 0) == 0) {
    aside.removed = true;
  } else if (errno != ENOENT) {
    return Status::FromErrno("unlink directory id");
  }
  return aside;
}

void RestoreDirId(const DirIdAside& aside, std::string_view id_name) {
  if (!aside.removed || aside.content.empty()) return;
  (void)CreateSmallFile(aside.dir.get(), std::string(id_name), aside.content, 0400);
}

Status RemoveDirectory(int dirfd, const std::string& name, const DirIdAside& aside) {
  ENVELOPE_RETURN_IF_ERROR(CheckName(name));
  struct stat named, held;
  if (::fstatat(dirfd, name.c_str(), &named, AT_SYMLINK_NOFOLLOW) != 0) {
    return Status::FromErrno("stat");
  }
  if (::fstat(aside.dir.get(), &held) != 0) return Status::FromErrno("fstat");
  if (named.st_dev != held.st_dev || named.st_ino != held.st_ino) {
    return Status::IoError("the backing directory was replaced", ESTALE);
  }
  if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0) return Status::FromErrno("rmdir");
  return Status::Ok();
}

// ---- small side files -----------------------------------------------------

StatusOr<Bytes> ReadSmallFile(int dirfd, const std::string& name, size_t max) {
  ENVELOPE_RETURN_IF_ERROR(CheckName(name));
  UniqueFd fd(::openat(dirfd, name.c_str(), O_RDONLY | kFileFlags));
  if (!fd.valid()) return OpenError("open " + name);
  struct stat st;
  ENVELOPE_RETURN_IF_ERROR(RequireRegular(fd.get(), name, &st));
  if (static_cast<uint64_t>(st.st_size) > max) {
    return Status::Corruption(name + " is larger than " + std::to_string(max) + " bytes");
  }
  Bytes out(max + 1);
  ENVELOPE_ASSIGN_OR_RETURN(size_t n, PreadFull(fd.get(), out, 0));
  if (n > max) {
    return Status::Corruption(name + " is larger than " + std::to_string(max) + " bytes");
  }
  out.resize(n);
  return out;
}

Status CreateSmallFile(int dirfd, const std::string& name, ByteView data, mode_t mode,
                       uid_t owner, gid_t group, bool sync) {
  ENVELOPE_RETURN_IF_ERROR(CheckName(name));
  UniqueFd fd(::openat(dirfd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | kFileFlags, mode));
  if (!fd.valid()) return Status::FromErrno("create " + name);
  Status s;
  if ((owner != static_cast<uid_t>(-1) || group != static_cast<gid_t>(-1)) &&
      ::fchown(fd.get(), owner, group) != 0) {
    s = Status::FromErrno("chown " + name);
  }
  if (s.ok()) s = PwriteFull(fd.get(), data, 0);
  if (s.ok() && sync && ::fsync(fd.get()) != 0) s = Status::FromErrno("fsync " + name);
  if (!s.ok()) ::unlinkat(dirfd, name.c_str(), 0);
  return s;
}

Status ReplaceSmallFile(int dirfd, const std::string& name, ByteView data, mode_t mode,
                        bool sync) {
  ENVELOPE_RETURN_IF_ERROR(CheckName(name));
  uint8_t raw[16];
  ENVELOPE_RETURN_IF_ERROR(crypto::RandomBytes(raw));
  // Contains '.', so never mistaken for an entry (docs/FORMAT.md §8.2).
  const std::string tmp = std::string(kTempPrefix) + HexEncode(raw);
  ENVELOPE_RETURN_IF_ERROR(CreateSmallFile(dirfd, tmp, data, mode, static_cast<uid_t>(-1),
                                           static_cast<gid_t>(-1), sync));
  if (::renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) != 0) {
    Status s = Status::FromErrno("rename " + name);
    ::unlinkat(dirfd, tmp.c_str(), 0);
    return s;
  }
  if (sync && ::fsync(dirfd) != 0) return Status::FromErrno("fsync the directory of " + name);
  return Status::Ok();
}

StatusOr<UniqueFd> OpenPrivateDir(int root_fd, const std::string& name, bool create) {
  ENVELOPE_RETURN_IF_ERROR(CheckName(name));
  if (create && ::mkdirat(root_fd, name.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::FromErrno("create " + name);
  }
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd fd, OpenDir(root_fd, name));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("fstat " + name);
  // Ours (or root's: nobody else can make a root-owned directory) and
  // writable by its owner only.
  if ((st.st_uid != ::geteuid() && st.st_uid != 0) || (st.st_mode & 022) != 0) {
    return Status::Corruption(name + " is not private to the volume's owner");
  }
  return fd;
}

}  // namespace envelope::fs::backing
