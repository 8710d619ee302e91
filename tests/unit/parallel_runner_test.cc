// ParallelRunner: every part runs exactly once, helpers really take parts
// (shown with a latch both parts must reach, never with sleeps), a busy
// runner leaves a second caller to run alone, and no helpers means the
// caller runs everything.
#include "core/base/parallel_runner.h"

#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <set>
#include <thread>
#include <vector>

namespace envelope {
namespace {

TEST(ParallelRunnerTest, EveryPartRunsExactlyOnce) {
  ParallelRunner runner(3);
  for (size_t parts : {1, 2, 3, 4, 7, 100, 1000}) {
    std::vector<std::atomic<int>> runs(parts);
    runner.Run(parts, [&](size_t p) { runs[p].fetch_add(1); });
    for (size_t p = 0; p < parts; ++p) EXPECT_EQ(runs[p].load(), 1) << parts << " parts, part " << p;
  }
  runner.Run(0, [](size_t) { ADD_FAILURE() << "no part to run"; });
}

TEST(ParallelRunnerTest, AHelperRunsAPartBesideTheCaller) {
  // Each of the two parts waits until the other has started: this returns
  // only if two threads run them at once.
  ParallelRunner runner(1);
  std::latch both(2);
  std::set<std::thread::id> threads;
  std::mutex mu;
  runner.Run(2, [&](size_t) {
    {
      std::lock_guard lock(mu);
      threads.insert(std::this_thread::get_id());
    }
    both.arrive_and_wait();
  });
  EXPECT_EQ(threads.size(), 2u);
}

TEST(ParallelRunnerTest, WithoutHelpersTheCallerRunsEverything) {
  ParallelRunner runner(0);
  EXPECT_EQ(runner.helpers(), 0u);
  const auto self = std::this_thread::get_id();
  int ran = 0;
  runner.Run(5, [&](size_t) {
    EXPECT_EQ(std::this_thread::get_id(), self);
    ++ran;
  });
  EXPECT_EQ(ran, 5);
}

TEST(ParallelRunnerTest, ASecondCallerRunsAloneWhileTheHelperIsBusy) {
  // The first caller's two parts hold the caller and the only helper until
  // the second caller, started from inside a part, has finished all of its
  // own parts on its own thread.
  ParallelRunner runner(1);
  std::latch both(2);
  std::latch second_done(1);
  std::atomic<int> second_ran{0};
  std::thread second;
  runner.Run(2, [&](size_t p) {
    both.arrive_and_wait();  // now the caller and the helper are both here
    if (p == 0) {
      second = std::thread([&] {
        const auto self = std::this_thread::get_id();
        runner.Run(4, [&](size_t) {
          EXPECT_EQ(std::this_thread::get_id(), self);
          second_ran.fetch_add(1);
        });
        second_done.count_down();
      });
    }
    second_done.wait();
  });
  second.join();
  EXPECT_EQ(second_ran.load(), 4);
}

TEST(ParallelRunnerTest, SharedHasOneHelperPerCoreBeyondTheFirst) {
  const unsigned cores = std::thread::hardware_concurrency();
  const size_t want = cores > 1 ? std::min<size_t>(cores - 1, 7) : 0;
  EXPECT_EQ(ParallelRunner::Shared().helpers(), want);
  std::atomic<int> ran{0};
  ParallelRunner::Shared().Run(16, [&](size_t) { ran.fetch_add(1); });
  EXPECT_EQ(ran.load(), 16);
}

}  // namespace
}  // namespace envelope
