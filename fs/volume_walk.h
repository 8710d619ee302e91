// A listing of every object in a volume's cipherdir, with plaintext paths,
// made without a mount: what rotate and fsck work through.
//
// Directories are opened by their backing path under the cipherdir, one at
// a time, so a tree of any depth and width needs a handful of descriptors.
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
  std::string name;       // the plaintext name ("" if it did not decode)
  unsigned char type = 0; // DT_REG, DT_DIR, DT_LNK, ...
};

struct VolumeDir {
  std::string backing_path;  // relative to the cipherdir; "." for the root
  std::string plain_path;    // "/" for the root
  format::DirId id{};
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
  // not decrypt.
  std::string DisplayPath(const VolumeEntry& e) const;
};

// Walks the whole volume. Fails only if the cipherdir itself cannot be
// read; trouble below it goes into `problems`.
StatusOr<VolumeListing> ListVolume(const Volume& volume);

}  // namespace envelope::fs

#endif  // ENVELOPE_FS_VOLUME_WALK_H_
