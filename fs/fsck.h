// envelopefs fsck: checks a volume without mounting it.
//
// Every directory id and name; every symlink target; for every regular
// file, its header, that the key service unwraps its DEK, that the key
// commitment holds and that the final chunk authenticates as final (so the
// size derived from the backing length is the written one: a cut file is
// named); with `deep`, that every chunk authenticates. Counts files
// per key id and version (what `envelopectl key retire` would cut off) and
// lists each damaged object by plaintext path.
#ifndef ENVELOPE_FS_FSCK_H_
#define ENVELOPE_FS_FSCK_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/base/status.h"
#include "fs/volume.h"

namespace envelope::fs {

struct FsckOptions {
  bool deep = false;
  int threads = 8;
  bool progress = false;
};

struct FsckReport {
  uint64_t directories = 0;  // including the root
  uint64_t files = 0;
  uint64_t symlinks = 0;
  uint64_t others = 0;       // FIFOs, devices, sockets
  uint64_t bytes = 0;        // plaintext bytes of the files
  uint64_t chunks_verified = 0;
  // "KEYID:VERSION" -> files whose DEK is wrapped under it.
  std::map<std::string, uint64_t> key_versions;
  // A file whose spare slot is torn: the trace of an interrupted rotation,
  // harmless (the active slot opens it).
  uint64_t torn_spare_slots = 0;
  // "PATH: reason" for every object that cannot be used.
  std::vector<std::string> damaged;

  bool clean() const { return damaged.empty(); }
};

// Fails only when the check cannot be made: the cipherdir is unreadable or
// the key service stops answering.
StatusOr<FsckReport> FsckVolume(Volume* volume, const FsckOptions& options);

}  // namespace envelope::fs

#endif  // ENVELOPE_FS_FSCK_H_
