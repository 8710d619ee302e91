// Progress of a long volume operation (rotate, fsck) on a terminal: a bar
// with count, rate and time left on stderr, redrawn five times a second by
// its own thread. Off (Add only counts) when stderr is not a terminal, so
// logs and pipes get just the final summary.
//
// Thread safety: Add may be called from any thread.
#ifndef ENVELOPE_FS_PROGRESS_H_
#define ENVELOPE_FS_PROGRESS_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace envelope::fs {

class Progress {
 public:
  // What Add counts: files, or bytes (shown in MiB, with MiB/s).
  enum class Unit { kFiles, kBytes };
  Progress(std::string verb, uint64_t total, bool enabled, Unit unit = Unit::kFiles);
  ~Progress();  // stops the thread and ends the line
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void Add(uint64_t n = 1) { done_.fetch_add(n, std::memory_order_relaxed); }
  double ElapsedSeconds() const;

  // True when stderr is a terminal.
  static bool StderrIsTerminal();

 private:
  void Draw(bool final);
  void Run();

  const std::string verb_;
  const uint64_t total_;
  const Unit unit_;
  const std::chrono::steady_clock::time_point start_;
  std::atomic<uint64_t> done_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

// Runs fn(i) for i in [0, n) on `threads` threads (at least 1). fn returns
// false to stop everyone early (a fatal error); items not yet started are
// then skipped.
void ParallelFor(size_t n, int threads, const std::function<bool(size_t)>& fn);

}  // namespace envelope::fs

#endif  // ENVELOPE_FS_PROGRESS_H_
