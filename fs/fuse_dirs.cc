// Directory handles: opendir, readdir and readdirplus, releasedir,
// fsyncdir. A handle holds the decrypted listing, made by the first readdir
// from offset 0; readdirplus looks every entry up into the inode table
// (EnvelopeFs::LookupBacking, fs/fuse_entries.cc).
#include "fs/fuse_fs_internal.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "core/base/fd_io.h"
#include "fs/backing_tree.h"

namespace envelope::fs::frontend {

namespace {

using format::BackingNameKind;
using format::NameCodec;

// A directory handle: the decoded listing, made by readdir at offset 0.
struct DirEntry {
  std::string name;
  std::string backing;  // the backing name, so readdirplus need not re-encrypt
  ino_t ino;
  mode_t type;
};
struct DirHandle {
  std::vector<DirEntry> entries;  // made by readdir at offset 0
};

// Decodes the listing of `dir` into handle->entries, "." and ".." first.
Status ListDirectory(EnvelopeFs* fs, Inode* dir, DirHandle* handle) {
  auto id = fs->DirIdOf(dir);
  if (!id.ok()) return id.status();
  auto opened = backing::OpenDir(dir->fd, "");
  if (!opened.ok()) return opened.status();
  const int fd = opened->release();
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    Status s = Status::FromErrno("fdopendir");
    ::close(fd);
    return s;
  }
  handle->entries.clear();
  // glibc skips entries whose inode number is 0, so "." and ".." carry the
  // backing directories' numbers.
  struct stat dot, dotdot;
  ino_t dot_ino = backing::Stat(fd, "", &dot).ok() ? dot.st_ino : 1;
  ino_t dotdot_ino = backing::StatParent(fd, &dotdot).ok() ? dotdot.st_ino : 1;
  handle->entries.push_back({".", "", dot_ino, S_IFDIR});
  handle->entries.push_back({"..", "", dotdot_ino, S_IFDIR});
  while (dirent* de = ::readdir(d)) {
    std::string_view n = de->d_name;
    if (n == "." || n == "..") continue;
    const BackingNameKind kind = NameCodec::Classify(n);
    if (kind == BackingNameKind::kInternal || kind == BackingNameKind::kLongSideFile) continue;
    auto decoded = fs->volume()->DecodeBackingName(fd, n, *id);
    if (!decoded.ok()) {
      spdlog::warn("skipping backing entry {}: {}", n, decoded.status().ToString());
      continue;
    }
    handle->entries.push_back(
        {std::move(*decoded), std::string(n), de->d_ino, static_cast<mode_t>(DTTOIF(de->d_type))});
  }
  ::closedir(d);
  return Status::Ok();
}

void DoReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi,
               bool plus) {
  EnvelopeFs* fs = Fs(req);
  auto* handle = reinterpret_cast<DirHandle*>(fi->fh);
  Inode* dir = Node(req, ino);
  // Offset 0 (a first read, or one after rewinddir) lists the directory as
  // it is now. The kernel serialises readdir calls on one handle.
  if (offset == 0) {
    Status s = ListDirectory(fs, dir, handle);
    if (!s.ok()) return ReplyError(req, s);
  }
  std::vector<char> buf(size);
  size_t used = 0;
  for (size_t i = static_cast<size_t>(offset); i < handle->entries.size(); ++i) {
    const DirEntry& de = handle->entries[i];
    size_t n;
    if (plus) {
      fuse_entry_param e;
      std::memset(&e, 0, sizeof(e));
      bool looked_up = false;
      if (de.name != "." && de.name != "..") {
        if (fs->LookupBacking(dir, de.backing, &e).ok()) looked_up = true;
        if (!looked_up) continue;  // vanished since opendir
      } else {
        // No lookup for the dot entries: the kernel does not count them.
        e.attr.st_mode = S_IFDIR;
        e.attr.st_ino = de.ino;
      }
      n = fuse_add_direntry_plus(req, buf.data() + used, size - used, de.name.c_str(), &e,
                                 static_cast<off_t>(i + 1));
      if (n > size - used) {
        if (looked_up) fs->inodes().Forget(fs->inodes().Get(e.ino), 1);
        break;
      }
    } else {
      struct stat st;
      std::memset(&st, 0, sizeof(st));
      st.st_ino = de.ino;
      st.st_mode = de.type;
      n = fuse_add_direntry(req, buf.data() + used, size - used, de.name.c_str(), &st,
                            static_cast<off_t>(i + 1));
      if (n > size - used) break;
    }
    used += n;
  }
  fuse_reply_buf(req, buf.data(), used);
}

}  // namespace

// The listing is made by the first readdir from offset 0, not here: a
// directory opened, then written to, then read (or rewound, rewinddir(3),
// which reads from offset 0 again) must show the names added since
// (POSIX; fstests generic/471). The directory's id is checked now so that
// a damaged directory fails at opendir.
void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto id = Fs(req)->DirIdOf(Node(req, ino));
  if (!id.ok()) return ReplyError(req, id.status());
  auto handle = std::make_unique<DirHandle>();
  fi->fh = reinterpret_cast<uint64_t>(handle.release());
  fi->cache_readdir = 0;
  fuse_reply_open(req, fi);
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  DoReaddir(req, ino, size, off, fi, false);
}

void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  DoReaddir(req, ino, size, off, fi, true);
}

void OpReleasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  delete reinterpret_cast<DirHandle*>(fi->fh);
  fuse_reply_err(req, 0);
}

void OpFsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info*) {
  auto fd = backing::OpenDir(Node(req, ino)->fd, "");
  if (!fd.ok()) return ReplyError(req, fd.status());
  int rc = datasync ? ::fdatasync(fd->get()) : ::fsync(fd->get());
  fuse_reply_err(req, rc == 0 ? 0 : errno);
}

}  // namespace envelope::fs::frontend
