// A bounded cache of unwrapped file DEKs, so that reopening a file does not
// ask the key service again. Entries are keyed by the wrapped DEK blob
// (which names key, version and context), expire after `max_age`, and the
// least recently used entry goes when `max_entries` is reached. Evicted
// DEKs are wiped (SecretBytes).
//
// A hash map, not an ordered one: wrapped blobs of one master key share a
// long prefix (the blob header names the key), so an ordered map compared
// that prefix a dozen times per lookup, on every file create and open.
//
// Thread safety: all methods are thread-safe (one mutex).
#ifndef ENVELOPE_FS_DEK_CACHE_H_
#define ENVELOPE_FS_DEK_CACHE_H_

#include <chrono>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "core/crypto/secret_bytes.h"

namespace envelope::fs {

class DekCache {
 public:
  DekCache(size_t max_entries, std::chrono::seconds max_age)
      : max_entries_(max_entries), max_age_(max_age) {}

  // The cached DEK for `wrapped`, or nullptr.
  std::shared_ptr<const crypto::SecretBytes> Find(const std::string& wrapped);
  void Insert(const std::string& wrapped, std::shared_ptr<const crypto::SecretBytes> dek);
  size_t size() const;

 private:
  struct Entry {
    std::shared_ptr<const crypto::SecretBytes> dek;
    std::chrono::steady_clock::time_point inserted;
    std::list<const std::string*>::iterator lru;
  };
  const size_t max_entries_;
  const std::chrono::seconds max_age_;
  mutable std::mutex mu_;
  // Guarded by mu_. lru_ points at the keys of entries_ (a node's key stays
  // where it is until the node is erased); front = most recent.
  std::unordered_map<std::string, Entry> entries_;
  std::list<const std::string*> lru_;
};

}  // namespace envelope::fs

#endif  // ENVELOPE_FS_DEK_CACHE_H_
