// A background thread that runs jobs one at a time, in order. For FUSE
// requests whose answer must wait for other requests of the same session
// (with the writeback cache an LSEEK waits until the kernel has written the
// file's dirty pages back, and those arrive as WRITEs): answered from here,
// the wait never holds one of the session's worker threads, so it cannot
// take the last one the WRITEs need.
#ifndef ENVELOPE_FS_SERIAL_WORKER_H_
#define ENVELOPE_FS_SERIAL_WORKER_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace envelope::fs {

class SerialWorker {
 public:
  // The thread starts with the first job: a process that forks before
  // (fuse_daemonize) keeps it.
  SerialWorker();
  // Stop().
  ~SerialWorker();
  SerialWorker(const SerialWorker&) = delete;
  SerialWorker& operator=(const SerialWorker&) = delete;

  // Queues `job`; after Stop() it runs on the caller's thread instead.
  void Post(std::function<void()> job);

  // Runs what is queued, then ends the thread. Idempotent.
  void Stop();

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;  // guarded by mu_
  bool stopping_ = false;                   // guarded by mu_
  std::thread thread_;                      // guarded by mu_; joined by Stop()
};

}  // namespace envelope::fs

#endif  // ENVELOPE_FS_SERIAL_WORKER_H_
