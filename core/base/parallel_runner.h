// Splits one caller's CPU-bound work (sealing the chunks of a large write)
// across the machine's other cores, without ever making the caller wait for
// a thread that is busy elsewhere.
//
// Run(parts, fn) calls fn(0) .. fn(parts - 1), each exactly once, and
// returns when all have returned. The caller runs parts itself; idle helper
// threads join in and take parts from the same counter. If every helper is
// busy with another caller's job, this caller simply runs all of its parts
// alone: no queueing, so a write never waits behind another file's write.
//
// fn must not throw, and a part must not call Run (a helper would wait on
// itself). Which thread runs a part is not fixed: state a part needs for
// itself (a cipher context, a buffer) is indexed by part, not by thread.
//
// Threads: `helpers` threads started by the constructor, stopped and joined
// by the destructor. Lock order: mu_ only.
#ifndef ENVELOPE_CORE_BASE_PARALLEL_RUNNER_H_
#define ENVELOPE_CORE_BASE_PARALLEL_RUNNER_H_

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace envelope {

class ParallelRunner {
 public:
  explicit ParallelRunner(size_t helpers);
  ~ParallelRunner();
  ParallelRunner(const ParallelRunner&) = delete;
  ParallelRunner& operator=(const ParallelRunner&) = delete;

  // One helper per core beyond the first (at most 7), started on first use
  // and joined at exit. First use must come after any fork (the mount
  // daemonizes first: threads do not survive fork); a runner whose helpers
  // are gone still works, its callers then run every part themselves.
  static ParallelRunner& Shared();

  size_t helpers() const { return threads_.size(); }

  void Run(size_t parts, const std::function<void(size_t)>& fn);

 private:
  struct Job {
    const std::function<void(size_t)>* fn;
    size_t parts;
    std::atomic<size_t> next{0};  // the next unclaimed part
    size_t done = 0;              // parts finished; guarded by mu_
    size_t users = 0;             // helpers holding a pointer; guarded by mu_
  };

  void HelperLoop();
  // Runs parts of `job` until none is left; returns how many it ran.
  static size_t Drain(Job& job);

  std::mutex mu_;
  std::condition_variable work_cv_;  // a job was posted, or stop_
  std::condition_variable done_cv_;  // a job's done or users changed
  Job* job_ = nullptr;               // the one open job; guarded by mu_
  bool stop_ = false;                // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace envelope

#endif  // ENVELOPE_CORE_BASE_PARALLEL_RUNNER_H_
