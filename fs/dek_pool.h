// DEKs made ahead of time for files not created yet, so that creating a file
// does not wait for a key-service round trip.
//
// Each entry is a fresh (file id, DEK, wrapped DEK) triple: the file id is
// chosen first because the wrapped DEK's encryption context names it. An
// entry is handed out once and never reused. The pool refills in a
// background thread only while files are being created (after each Take),
// never while idle: once it is down to half, one batch tops it up (one
// request to the key service for many keys). Entries older than `max_age`
// are dropped, so a key that is disabled, rotated or retired takes effect
// for new files within `max_age`.
//
// Thread safety: Take() is thread-safe. The background thread starts at the
// first Take() (after the mount has daemonized: threads do not survive
// fork).
#ifndef ENVELOPE_FS_DEK_POOL_H_
#define ENVELOPE_FS_DEK_POOL_H_

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "core/format/file_header.h"
#include "kms/kms_client.h"

namespace envelope::fs {

class DekPool {
 public:
  struct Entry {
    format::FileId file_id;
    kms::DataKey key;
    std::chrono::steady_clock::time_point made;
  };
  // Makes `count` entries (at least one, at most `count`), or fails.
  using Generator = std::function<StatusOr<std::vector<Entry>>(size_t count)>;

  DekPool(Generator generator, size_t capacity, std::chrono::milliseconds max_age)
      : generator_(std::move(generator)), capacity_(capacity), max_age_(max_age) {}
  ~DekPool();
  DekPool(const DekPool&) = delete;
  DekPool& operator=(const DekPool&) = delete;

  // A fresh entry: from the pool, or made now if the pool has none (then
  // the generator's error, e.g. the key service being down, comes back).
  StatusOr<Entry> Take();

 private:
  void Refill();

  const Generator generator_;
  const size_t capacity_;
  const std::chrono::milliseconds max_age_;
  std::mutex mu_;  // guards everything below
  std::condition_variable wake_;
  std::deque<Entry> ready_;
  bool want_refill_ = false;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace envelope::fs

#endif  // ENVELOPE_FS_DEK_POOL_H_
