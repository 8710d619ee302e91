// The backing names of plaintext names encoded lately. The kernel asks for
// a name twice in a row: a LOOKUP that finds nothing comes right before the
// CREATE, MKDIR, MKNOD or SYMLINK of that name, and a LOOKUP that finds an
// entry before its UNLINK or RENAME; each would encrypt the name again
// (AES-SIV and base64url, or SHA-256 on top for a long name).
//
// An entry is keyed by (directory id, plaintext name), the two inputs the
// encoding is a function of (NameCodec is deterministic), so it is never
// stale: no operation on the tree invalidates it. A directory whose id
// changes (removed and made again under the same name, replaced by another
// mount) is looked up with its new id and misses; a name removed and made
// again encodes as before. Nothing is keyed by inode number or address,
// which the table reuses.
//
// Bounded: a direct-mapped table of `capacity` slots, each holding the one
// name that hashed there last (a colliding name evicts it); a hit copies the
// EncodedName out. Names are not key material and the kernel's dentry cache
// holds the same names; the cache holds no key.
//
// Thread safety: thread-safe (one mutex, held for a slot's compare and
// copy only).
#ifndef ENVELOPE_FS_NAME_CACHE_H_
#define ENVELOPE_FS_NAME_CACHE_H_

#include <cstddef>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/format/name_codec.h"

namespace envelope::fs {

class NameCache {
 public:
  explicit NameCache(size_t capacity);
  NameCache(const NameCache&) = delete;
  NameCache& operator=(const NameCache&) = delete;

  // The encoding of `name` in the directory `dir`, if cached.
  std::optional<format::EncodedName> Find(const format::DirId& dir, std::string_view name) const;
  // Records the encoding of `name` in `dir`.
  void Insert(const format::DirId& dir, std::string_view name, const format::EncodedName& en);

  // For tests: how many Find calls hit and missed.
  size_t hits() const;
  size_t misses() const;

 private:
  struct Slot {
    bool used = false;
    format::DirId dir{};
    std::string name;
    format::EncodedName encoded;
  };
  size_t SlotOf(const format::DirId& dir, std::string_view name) const;

  mutable std::mutex mu_;  // guards everything below
  std::vector<Slot> slots_;
  mutable size_t hits_ = 0;
  mutable size_t misses_ = 0;
};

}  // namespace envelope::fs

#endif  // ENVELOPE_FS_NAME_CACHE_H_
