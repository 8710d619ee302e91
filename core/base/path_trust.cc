#include "core/base/path_trust.h"

#include <sys/stat.h>

#include <cstdio>
#include <vector>

namespace envelope {

namespace {

// The components of `path`, or InvalidArgument.
StatusOr<std::vector<std::string>> Components(const std::string& path) {
  if (path.empty() || path[0] != '/') {
    return Status::InvalidArgument("not an absolute path: " + path);
  }
  std::vector<std::string> parts;
  size_t begin = 0;
  while (begin < path.size()) {
    size_t end = path.find('/', begin);
    if (end == std::string::npos) end = path.size();
    if (end > begin) {
      std::string part = path.substr(begin, end - begin);
      if (part == "." || part == "..") {
        return Status::InvalidArgument("a path with a \".\" or \"..\" component: " + path);
      }
      parts.push_back(std::move(part));
    }
    begin = end + 1;
  }
  return parts;
}

std::string Join(const std::vector<std::string>& parts, size_t n) {
  if (n == 0) return "/";
  std::string out;
  for (size_t i = 0; i < n; ++i) out += "/" + parts[i];
  return out;
}

// Checks one component; `leaf` selects the rules for the path itself.
Status CheckOne(const std::string& p, uid_t self, bool leaf, PathKind kind) {
  struct stat st;
  if (::lstat(p.c_str(), &st) != 0) return Status::FromErrno("stat " + p);
  std::string why;
  const bool want_dir = !leaf || kind == PathKind::kDirectory;
  if (S_ISLNK(st.st_mode)) {
    why = "is a symlink (never followed)";
  } else if (want_dir && !S_ISDIR(st.st_mode)) {
    why = "is not a directory";
  } else if (!want_dir && !S_ISREG(st.st_mode)) {
    why = "is not a regular file";
  } else if (st.st_uid != self && st.st_uid != 0) {
    why = "belongs to uid " + std::to_string(st.st_uid) + ", not to uid " +
          std::to_string(self) + " or root";
  } else if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (leaf || (st.st_mode & S_ISVTX) == 0)) {
    why = leaf ? "is writable by group or others" : "is writable by group or others and not sticky";
  }
  if (why.empty()) return Status::Ok();
  char mode[8];
  std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
  return Status::FailedPrecondition(p + " " + why + " (uid " + std::to_string(st.st_uid) +
                                    ", mode " + mode + ")");
}

Status Walk(const std::vector<std::string>& parts, size_t from, uid_t self) {
  for (size_t n = from + 1; n-- > 0;) {
    ENVELOPE_RETURN_IF_ERROR(CheckOne(Join(parts, n), self, false, PathKind::kDirectory));
  }
  return Status::Ok();
}

}  // namespace

Status CheckNotReplaceable(const std::string& absolute_path, uid_t self, PathKind leaf_kind) {
  ENVELOPE_ASSIGN_OR_RETURN(std::vector<std::string> parts, Components(absolute_path));
  ENVELOPE_RETURN_IF_ERROR(CheckOne(Join(parts, parts.size()), self, true, leaf_kind));
  if (parts.empty()) return Status::Ok();  // "/" has nothing above it
  return Walk(parts, parts.size() - 1, self);
}

Status CheckDirectoriesAbove(const std::string& absolute_path, uid_t self) {
  ENVELOPE_ASSIGN_OR_RETURN(std::vector<std::string> parts, Components(absolute_path));
  if (parts.empty()) return Status::Ok();
  return Walk(parts, parts.size() - 1, self);
}

}  // namespace envelope
