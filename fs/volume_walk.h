// A listing of every object in a volume's cipherdir, with plaintext paths,
// made without a mount: what rotate and fsck work through.
//
// Directories are opened by their backing path under the cipherdir, one at
// a time, so a tree of any depth and width needs a handful of descriptors.
//
// Names are decrypted as the walk goes (fsck reports every name that does
// not decrypt), or, for rotate, which needs a plaintext path only to name a
// file that failed, not at all: DecodePath then decrypts one path on
// demand. A walk of a million files without names is readdir and nothing
// else.
#ifndef ENVELOPE_FS_VOLUME_WALK_H_
#define ENVELOPE_FS_VOLUME_WALK_H_

#include <dirent.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/base/status.h"
#include "fs/volume.h"

namespace envelope::fs {

struct VolumeEntry {
  uint32_t dir = 0;       // index into VolumeListing::dirs
  std::string backing;    // the backing name inside that directory
  std::string name;       // the plaintext name ("" if it did not decode, or not decoded)
  unsigned char type = 0; // DT_REG, DT_DIR, DT_LNK, ...
  ino_t ino = 0;          // the backing inode, as readdir gave it (an order for I/O)
};

struct VolumeDir {
  std::string backing_path;  // relative to the cipherdir; "." for the root
  std::string plain_path;    // "/" for the root; "" when names were not decoded
  format::DirId id{};
  uint32_t parent = 0;       // index of the parent directory (the root's is 0)
};

struct ListOptions {
  // Decrypt every name (and report those that do not decrypt). Off, the
  // listing has backing names only, and `problems` names directories.
  bool decode_names = true;
};

struct VolumeListing {
  std::vector<VolumeDir> dirs;
  std::vector<VolumeEntry> entries;  // every object but the root directory
  // What a walk found wrong without opening any file: a directory without a
  // readable id, a name that does not decrypt, a long name without its side
  // file. Each names the plaintext path where it can.
  std::vector<std::string> problems;

  std::string BackingPath(const VolumeEntry& e) const;
  // The plaintext path, or the backing path with a note if the name does
  // not decrypt. REQUIRES: a listing made with decode_names.
  std::string DisplayPath(const VolumeEntry& e) const;
  // The same for any listing: decrypts the names of `e` and of each of its
  // directories now (opening the directories beneath `root_fd`, the
  // cipherdir). For the few paths a run reports, not for every entry.
  std::string DecodePath(const Volume& volume, int root_fd, const VolumeEntry& e) const;
};

// Walks the whole volume. Fails only if the cipherdir itself cannot be
// read; trouble below it goes into `problems`.
StatusOr<VolumeListing> ListVolume(const Volume& volume, ListOptions options = {});

}  // namespace envelope::fs

#endif  // ENVELOPE_FS_VOLUME_WALK_H_
