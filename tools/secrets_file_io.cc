#include "tools/secrets_file_io.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "core/base/fd_io.h"

namespace envelope::secrets {

namespace {

// How often an update starts again after another writer created the file
// first or replaced it while we waited for the lock: each concurrent
// writer can cause one restart, so this bounds a livelock, not contention.
constexpr int kMaxUpdateAttempts = 100;

Status ErrnoStatus(const std::string& what, const std::string& path) {
  return Status::FromErrno(what + " " + path);
}

// Reads the whole of `fd` (at most kMaxFileSizeInBytes + 1 bytes, so that
// Parse reports an oversized file).
StatusOr<std::string> ReadFd(int fd, const std::string& path) {
  std::string text;
  char buf[16384];
  uint64_t offset = 0;
  while (text.size() <= kMaxFileSizeInBytes) {
    auto n =
        PreadFull(fd, {reinterpret_cast<uint8_t*>(buf), sizeof(buf)}, offset);
    if (!n.ok()) return n.status().WithContext("cannot read " + path);
    text.append(buf, *n);
    offset += *n;
    if (*n < sizeof(buf)) break;
  }
  return text;
}

// An exclusive flock on the file that `path` names now, or nothing when
// the file does not exist.
struct LockedFile {
  UniqueFd fd;  // holds the lock; invalid if the file does not exist
  struct stat st {};
};

// flock locks an inode, and a writer replaces the inode: after locking,
// the path must still name the locked inode, else the lock is on a file
// that was just replaced and we start again.
StatusOr<LockedFile> LockForUpdate(const std::string& path) {
  for (int attempt = 0; attempt < kMaxUpdateAttempts; ++attempt) {
    LockedFile locked;
    locked.fd = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!locked.fd.valid()) {
      if (errno == ENOENT) return locked;
      return ErrnoStatus("cannot open", path);
    }
    while (::flock(locked.fd.get(), LOCK_EX) != 0) {
      if (errno != EINTR) return ErrnoStatus("cannot lock", path);
    }
    struct stat now {};
    if (::fstat(locked.fd.get(), &locked.st) != 0) {
      return ErrnoStatus("cannot stat", path);
    }
    if (::stat(path.c_str(), &now) == 0 && now.st_dev == locked.st.st_dev &&
        now.st_ino == locked.st.st_ino) {
      return locked;
    }
  }
  return Status::Unavailable(path + " keeps being replaced; try again");
}

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Writes `text` to a new file beside `path` (same directory, so that the
// rename stays on one filesystem), fsyncs it and moves it into place: over
// the old file if `old` is given (keeping its mode and, where permitted,
// owner), else only if nothing is at `path` yet (AlreadyExists otherwise).
// New files are mode 0600. The directory is fsync'ed so that the rename
// survives a crash.
Status WriteAtomically(const std::string& path, const std::string& text,
                       const struct stat* old) {
  const std::string dir = DirectoryOf(path);
  const size_t slash = path.rfind('/');
  const std::string base =
      slash == std::string::npos ? path : path.substr(slash + 1);
  std::string tmp = dir + "/." + base + ".tmp-XXXXXX";
  UniqueFd fd(::mkostemp(tmp.data(), O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus("cannot create a file in", dir);
  bool renamed = false;
  struct Cleanup {
    const std::string& tmp;
    const bool& renamed;
    ~Cleanup() {
      if (!renamed) ::unlink(tmp.c_str());
    }
  } cleanup{tmp, renamed};

  ENVELOPE_RETURN_IF_ERROR(PwriteFull(fd.get(), AsBytes(text), 0)
                               .WithContext("cannot write " + tmp));
  const mode_t mode = old != nullptr ? (old->st_mode & 07777) : 0600;
  if (::fchmod(fd.get(), mode) != 0) return ErrnoStatus("cannot chmod", tmp);
  if (old != nullptr &&
      (old->st_uid != ::geteuid() || old->st_gid != ::getegid())) {
    // Root editing an application's file leaves it the application's.
    // Anyone else cannot give a file away; the rename still replaces it.
    if (::fchown(fd.get(), old->st_uid, old->st_gid) != 0 && errno != EPERM) {
      return ErrnoStatus("cannot chown", tmp);
    }
  }
  if (::fsync(fd.get()) != 0) return ErrnoStatus("cannot fsync", tmp);
  fd = UniqueFd();

  if (old != nullptr) {
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      return ErrnoStatus("cannot rename a new version over", path);
    }
  } else if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(),
                         RENAME_NOREPLACE) != 0) {
    if (errno == EEXIST) return Status::AlreadyExists(path + " appeared");
    if (errno != EINVAL && errno != ENOSYS) {
      return ErrnoStatus("cannot create", path);
    }
    // A filesystem without RENAME_NOREPLACE: link(2) refuses to replace
    // too.
    if (::link(tmp.c_str(), path.c_str()) != 0) {
      if (errno == EEXIST) return Status::AlreadyExists(path + " appeared");
      return ErrnoStatus("cannot create", path);
    }
    ::unlink(tmp.c_str());
  }
  renamed = true;
  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.valid() && ::fsync(dir_fd.get()) != 0 && errno != EINVAL &&
      errno != ENOSYS) {
    return ErrnoStatus("cannot fsync", dir);
  }
  return Status::Ok();
}

}  // namespace

StatusOr<SecretsFile> LoadSecretsFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) {
      return Status::NotFound(path + " does not exist");
    }
    return ErrnoStatus("cannot open", path);
  }
  ENVELOPE_ASSIGN_OR_RETURN(std::string text, ReadFd(fd.get(), path));
  return SecretsFile::Parse(text, path);
}

Status UpdateSecretsFile(const std::string& given_path, const SecretsFileChange& change) {
  // A symlinked file is updated where it points: renaming over the link
  // would replace it with a regular file.
  std::string path = given_path;
  struct stat link_st {};
  if (::lstat(path.c_str(), &link_st) == 0 && S_ISLNK(link_st.st_mode)) {
    std::unique_ptr<char, decltype(&std::free)> real(
        ::realpath(path.c_str(), nullptr), &std::free);
    if (!real) return ErrnoStatus("cannot resolve", path);
    path = real.get();
  }
  for (int attempt = 0; attempt < kMaxUpdateAttempts; ++attempt) {
    ENVELOPE_ASSIGN_OR_RETURN(LockedFile locked, LockForUpdate(path));
    std::optional<SecretsFile> file;
    if (locked.fd.valid()) {
      ENVELOPE_ASSIGN_OR_RETURN(std::string text,
                                ReadFd(locked.fd.get(), given_path));
      // A file whose header is damaged is not rewritten: we could not say
      // what it holds, so we could not keep it.
      ENVELOPE_ASSIGN_OR_RETURN(file, SecretsFile::Parse(text, given_path));
    }
    bool changed = true;
    ENVELOPE_RETURN_IF_ERROR(change(file, &changed));
    if (!changed) return Status::Ok();
    if (!file) return Status::Internal("BUG: an update removed the file");
    Status s = WriteAtomically(path, file->Serialize(),
                               locked.fd.valid() ? &locked.st : nullptr);
    // Another command created the file between our look and our write:
    // start again on its version.
    if (s.code() == StatusCode::kAlreadyExists) continue;
    return s;
  }
  return Status::Unavailable(given_path + " keeps changing; try again");
}

}  // namespace envelope::secrets
