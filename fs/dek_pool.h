// DEKs made ahead of time for files not created yet, so that creating a file
// does not wait for a key-service round trip.
//
// Each entry is a fresh (file id, DEK, wrapped DEK) triple: the file id is
// chosen first because the wrapped DEK's encryption context names it. An
// entry is handed out once and never reused. The pool refills in a
// background thread only while files are being created (after each Take),
// never while idle: once it is down to half its target, one batch tops it
// up (one request to the key service for many keys). Entries older than
// `max_age` are dropped, so a key that is disabled, rotated or retired takes
// effect for new files within `max_age`.
//
// The target follows demand: twice the number of Takes in the current
// window of max_age/4 or the one before it (whichever is larger), between
// kMinTarget and `capacity`. So a burst of creates gets large batches, whose
// per-request cost (a round trip, an HTTP exchange, an authorization, an
// audit record) is shared by many keys, while a file created now and then
// wastes at most a couple of keys (whose contexts, naming files that never
// existed, would otherwise fill the key service's audit log).
//
// An empty pool makes the caller's entry first and only then asks for the
// batch, so that the caller's request never queues behind a batch.
//
// Thread safety: Take() is thread-safe. The background thread starts at the
// first Take() (after the mount has daemonized: threads do not survive
// fork).
#ifndef ENVELOPE_FS_DEK_POOL_H_
#define ENVELOPE_FS_DEK_POOL_H_

#include <algorithm>
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
  // The time `max_age` is measured on (the clock the generator stamps
  // Entry::made with). Tests pass a clock they advance by hand.
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  // The target never goes below this (unless `capacity` is smaller).
  static constexpr size_t kMinTarget = 2;

  DekPool(Generator generator, size_t capacity, std::chrono::milliseconds max_age,
          Clock clock = std::chrono::steady_clock::now)
      : generator_(std::move(generator)),
        capacity_(capacity),
        max_age_(max_age),
        clock_(std::move(clock)),
        target_(std::min(capacity, kMinTarget)) {}
  ~DekPool();
  DekPool(const DekPool&) = delete;
  DekPool& operator=(const DekPool&) = delete;

  // A fresh entry: from the pool, or made now if the pool has none (then
  // the generator's error, e.g. the key service being down, comes back).
  StatusOr<Entry> Take();

  // Blocks until the background thread has nothing to do: no refill is
  // wanted, and none is running. For tests, which thereby know that a
  // refill has happened (or will not) without sleeping.
  void WaitUntilIdle();

 private:
  void Refill();
  // Counts a Take at `now` and sets target_ from the demand. REQUIRES: mu_ held.
  void CountDemand(std::chrono::steady_clock::time_point now);
  // REQUIRES: mu_ held.
  bool RefillWanted() const { return want_refill_ && ready_.size() <= target_ / 2; }

  const Generator generator_;
  const size_t capacity_;
  const std::chrono::milliseconds max_age_;
  const Clock clock_;
  std::mutex mu_;  // guards everything below
  std::condition_variable wake_;  // to the thread: work may be wanted
  std::condition_variable idle_;  // from the thread: a refill finished
  std::deque<Entry> ready_;
  size_t target_;  // how many entries a refill aims for, <= capacity_
  // Demand: Takes since window_start_, and in the window before it (0 if
  // that window saw none or lies further back).
  std::chrono::steady_clock::time_point window_start_{};
  size_t taken_in_window_ = 0;
  size_t taken_last_window_ = 0;
  bool want_refill_ = false;
  bool refilling_ = false;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace envelope::fs

#endif  // ENVELOPE_FS_DEK_POOL_H_
