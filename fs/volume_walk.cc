#include "fs/volume_walk.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <optional>

#include "core/base/fd_io.h"
#include "core/format/name_codec.h"
#include "fs/backing_tree.h"

namespace envelope::fs {

namespace {

std::string Join(const std::string& dir, const std::string& name) {
  if (dir == ".") return name;
  return dir + "/" + name;
}

std::string JoinPlain(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

// How a directory is named in `problems`: its plaintext path when the walk
// decodes names, else its backing path.
std::string Where(const VolumeDir& dir) {
  return dir.plain_path.empty() ? "backing directory " + dir.backing_path : dir.plain_path;
}

// Lists one directory into `listing`, queueing its subdirectories.
void ListDirectory(const Volume& volume, int root_fd, uint32_t index, const ListOptions& options,
                   VolumeListing* listing, std::vector<uint32_t>* pending) {
  const std::string backing_path = listing->dirs[index].backing_path;
  const std::string plain_path = listing->dirs[index].plain_path;
  const std::string where = Where(listing->dirs[index]);
  // Every component without following a symlink, and never above the
  // cipherdir: a directory swapped for a symlink since it was listed is
  // reported, not entered.
  auto dir = backing::OpenDirBeneath(root_fd, backing_path);
  if (!dir.ok()) {
    listing->problems.push_back(where + ": cannot open the backing directory " + backing_path +
                                ": " + dir.status().ToString());
    return;
  }
  auto id = volume.ReadDirId(dir->get());
  if (!id.ok()) {
    listing->problems.push_back(where + ": directory id unreadable (" +
                                id.status().ToString() + "); its names cannot be decrypted");
    return;
  }
  listing->dirs[index].id = *id;
  DIR* d = ::fdopendir(dir->get());
  if (d == nullptr) return;
  dir->release();
  while (dirent* de = ::readdir(d)) {
    std::string n = de->d_name;
    if (n == "." || n == "..") continue;
    const format::BackingNameKind kind = format::NameCodec::Classify(n);
    if (kind == format::BackingNameKind::kInternal ||
        kind == format::BackingNameKind::kLongSideFile) {
      continue;
    }
    VolumeEntry e;
    e.dir = index;
    e.backing = n;
    e.type = de->d_type;
    e.ino = de->d_ino;
    if (e.type == DT_UNKNOWN) {
      struct stat st;
      if (backing::Stat(::dirfd(d), n, &st).ok()) {
        e.type = IFTODT(st.st_mode);
      }
    }
    if (options.decode_names) {
      auto name = volume.DecodeBackingName(::dirfd(d), n, *id);
      if (name.ok()) {
        e.name = std::move(*name);
      } else {
        listing->problems.push_back(plain_path + ": backing entry " + Join(backing_path, n) +
                                    " has a name that does not decrypt (" +
                                    name.status().ToString() + ")");
      }
    }
    if (e.type == DT_DIR) {
      VolumeDir sub;
      sub.backing_path = Join(backing_path, n);
      if (options.decode_names) {
        sub.plain_path =
            e.name.empty() ? JoinPlain(plain_path, "?" + n) : JoinPlain(plain_path, e.name);
      }
      sub.parent = index;
      listing->dirs.push_back(std::move(sub));
      pending->push_back(static_cast<uint32_t>(listing->dirs.size() - 1));
    }
    listing->entries.push_back(std::move(e));
  }
  ::closedir(d);
}

// The plaintext name of the entry `backing` of `dir`, if it decrypts.
std::optional<std::string> DecodeIn(const Volume& volume, int root_fd, const VolumeDir& dir,
                                    const std::string& backing) {
  auto fd = backing::OpenDirBeneath(root_fd, dir.backing_path);
  if (!fd.ok()) return std::nullopt;
  auto name = volume.DecodeBackingName(fd->get(), backing, dir.id);
  if (!name.ok()) return std::nullopt;
  return std::move(*name);
}

}  // namespace

std::string VolumeListing::BackingPath(const VolumeEntry& e) const {
  return Join(dirs[e.dir].backing_path, e.backing);
}

std::string VolumeListing::DisplayPath(const VolumeEntry& e) const {
  if (e.name.empty()) return BackingPath(e) + " (backing name; it does not decrypt)";
  return JoinPlain(dirs[e.dir].plain_path, e.name);
}

std::string VolumeListing::DecodePath(const Volume& volume, int root_fd,
                                      const VolumeEntry& e) const {
  if (!e.name.empty()) return DisplayPath(e);
  const std::string undecodable = BackingPath(e) + " (backing name; it does not decrypt)";
  std::vector<std::string> parts;
  auto name = DecodeIn(volume, root_fd, dirs[e.dir], e.backing);
  if (!name) return undecodable;
  parts.push_back(std::move(*name));
  for (uint32_t d = e.dir; d != 0; d = dirs[d].parent) {
    const std::string& path = dirs[d].backing_path;
    // npos + 1 == 0: a directory at the top is its whole backing path.
    auto part = DecodeIn(volume, root_fd, dirs[dirs[d].parent], path.substr(path.rfind('/') + 1));
    if (!part) return undecodable;
    parts.push_back(std::move(*part));
  }
  std::string out;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) out += "/" + *it;
  return out;
}

StatusOr<VolumeListing> ListVolume(const Volume& volume, ListOptions options) {
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd root, backing::OpenRoot(volume.cipherdir()));
  VolumeListing listing;
  listing.dirs.push_back(VolumeDir{".", "/", {}, 0});
  std::vector<uint32_t> pending = {0};
  while (!pending.empty()) {
    uint32_t index = pending.back();
    pending.pop_back();
    ListDirectory(volume, root.get(), index, options, &listing, &pending);
  }
  return listing;
}

}  // namespace envelope::fs
