#include "fs/progress.h"

#include <unistd.h>

#include <cstdio>
#include <vector>

namespace envelope::fs {

Progress::Progress(std::string verb, uint64_t total, bool enabled, Unit unit)
    : verb_(std::move(verb)), total_(total), unit_(unit), start_(std::chrono::steady_clock::now()) {
  if (enabled) thread_ = std::thread([this] { Run(); });
}

Progress::~Progress() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  Draw(/*final=*/true);
}

double Progress::ElapsedSeconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

bool Progress::StderrIsTerminal() { return ::isatty(STDERR_FILENO) == 1; }

void Progress::Run() {
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, std::chrono::milliseconds(200), [this] { return stop_; })) {
    Draw(/*final=*/false);
  }
}

void Progress::Draw(bool final) {
  constexpr int kWidth = 30;
  const uint64_t done = done_.load(std::memory_order_relaxed);
  const double elapsed = ElapsedSeconds();
  const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0;
  const double fraction = total_ == 0 ? 1.0 : static_cast<double>(done) / static_cast<double>(total_);
  const int filled = static_cast<int>(fraction * kWidth);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(kWidth, '.');
  char eta[32] = "";
  if (!final && rate > 0 && done < total_) {
    std::snprintf(eta, sizeof(eta), "  ETA %.0fs", static_cast<double>(total_ - done) / rate);
  }
  if (unit_ == Unit::kBytes) {
    constexpr double kMiB = 1024.0 * 1024.0;
    std::fprintf(stderr, "\r%s [%s] %.1f/%.1f MiB  %.1f MiB/s%s\033[K%s", verb_.c_str(),
                 bar.c_str(), static_cast<double>(done) / kMiB,
                 static_cast<double>(total_) / kMiB, rate / kMiB, eta, final ? "\n" : "");
  } else {
    std::fprintf(stderr, "\r%s [%s] %llu/%llu files  %.0f files/s%s\033[K%s", verb_.c_str(),
                 bar.c_str(), static_cast<unsigned long long>(done),
                 static_cast<unsigned long long>(total_), rate, eta, final ? "\n" : "");
  }
  std::fflush(stderr);
}

void ParallelFor(size_t n, int threads, const std::function<bool(size_t)>& fn) {
  std::atomic<size_t> next{0};
  std::atomic<bool> stop{false};
  auto work = [&] {
    while (!stop.load(std::memory_order_relaxed)) {
      size_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= n) return;
      if (!fn(i)) stop.store(true);
    }
  };
  const size_t count = std::min<size_t>(n, static_cast<size_t>(std::max(threads, 1)));
  std::vector<std::thread> pool;
  for (size_t t = 1; t < count; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
}

}  // namespace envelope::fs
