#include "core/base/private_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "core/base/path_trust.h"

namespace envelope {

namespace {

std::string Octal(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

Status Refuse(const std::string& path, const std::string& why) {
  return Status::PermissionDenied(path + ": " + why + " (not a private directory)");
}

}  // namespace

StatusOr<UniqueFd> OpenPrivateDirectory(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (path.empty() || path[0] != '/' || slash == std::string::npos || slash + 1 == path.size()) {
    return Status::InvalidArgument("not an absolute directory path: " + path);
  }
  const std::string parent_path = slash == 0 ? "/" : path.substr(0, slash);
  const std::string name = path.substr(slash + 1);
  const uid_t me = ::geteuid();
  // Nobody else may be able to rename our directory away or put another in
  // its place: the same rule for the parent and every directory above.
  Status above = CheckDirectoriesAbove(path, me);
  if (above.code() == StatusCode::kFailedPrecondition) {
    return Refuse(path, above.message() + ", so another user could replace it");
  }
  ENVELOPE_RETURN_IF_ERROR(above);
  UniqueFd parent(::open(parent_path.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!parent.valid()) return Status::FromErrno("open " + parent_path);
  if (::mkdirat(parent.get(), name.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::FromErrno("mkdir " + path);
  }
  UniqueFd dir(::openat(parent.get(), name.c_str(),
                        O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir.valid()) {
    if (errno == ELOOP || errno == ENOTDIR) return Refuse(path, "a symlink or not a directory");
    return Status::FromErrno("open " + path);
  }
  struct stat st;
  if (::fstat(dir.get(), &st) != 0) return Status::FromErrno("fstat " + path);
  if (st.st_uid != me) return Refuse(path, "owned by uid " + std::to_string(st.st_uid));
  if ((st.st_mode & 077) != 0) return Refuse(path, "mode " + Octal(st.st_mode));
  return dir;
}

StatusOr<UniqueFd> OpenPrivateFileForAppend(int dirfd, const std::string& name) {
  UniqueFd fd(::openat(dirfd, name.c_str(),
                       O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    if (errno == ELOOP) return Refuse(name, "a symlink");
    return Status::FromErrno("open " + name);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("fstat " + name);
  if (!S_ISREG(st.st_mode) || st.st_uid != ::geteuid() || (st.st_mode & 077) != 0 ||
      st.st_nlink != 1) {
    return Status::PermissionDenied(name +
                                    ": not a regular file of ours with mode 0600 and one link");
  }
  return fd;
}

}  // namespace envelope
