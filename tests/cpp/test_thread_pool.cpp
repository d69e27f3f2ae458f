// The CPU thread pool (cpu/thread_pool.h) and the work rule (cpu/parallel.h).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cpu/parallel.h"
#include "cpu/thread_pool.h"

namespace chita::cpu {
namespace {

TEST(ThreadPool, EveryChunkRunsExactlyOnce) {
  for (int threads : {1, 2, 3, 8}) {
    for (std::int64_t chunks : {0, 1, 2, 7, 1000, 100000}) {
      std::vector<std::atomic<int>> runs(static_cast<std::size_t>(chunks));
      parallel_chunks(chunks, threads, [&](std::int64_t c) { runs[c].fetch_add(1); });
      for (std::int64_t c = 0; c < chunks; ++c)
        ASSERT_EQ(runs[c].load(), 1) << "chunk " << c << " of " << chunks << ", " << threads;
    }
  }
}

TEST(ThreadPool, UsesSeveralThreadsAndTheCaller) {
  // Chunks that take a while, so that helpers surely get some.
  std::vector<std::thread::id> who(64);
  parallel_chunks(64, 4, [&](std::int64_t c) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    who[c] = std::this_thread::get_id();
  });
  std::vector<std::thread::id> distinct;
  for (auto id : who)
    if (std::find(distinct.begin(), distinct.end(), id) == distinct.end()) distinct.push_back(id);
  EXPECT_GE(distinct.size(), 2u);
  EXPECT_LE(distinct.size(), 4u);
  EXPECT_NE(std::find(who.begin(), who.end(), std::this_thread::get_id()), who.end());
  EXPECT_GE(pool_workers(), 1);
}

TEST(ThreadPool, FirstExceptionIsRethrownAndThePoolStaysUsable) {
  std::atomic<int> after{0};
  try {
    parallel_chunks(1000, 4, [&](std::int64_t c) {
      if (c == 37 || c == 500) throw std::runtime_error("chunk failed: " + std::to_string(c));
      after.fetch_add(1);
    });
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("chunk failed"), std::string::npos);
  }
  EXPECT_LT(after.load(), 1000);
  EXPECT_FALSE(inside_parallel_region());
  std::atomic<std::int64_t> sum{0};
  parallel_chunks(100, 4, [&](std::int64_t c) { sum += c; });
  EXPECT_EQ(sum.load(), 4950);
  // Inline regions propagate too.
  EXPECT_THROW(parallel_chunks(1, 4, [](std::int64_t) { throw std::invalid_argument("x"); }),
               std::invalid_argument);
}

TEST(ThreadPool, NestedRegionsRunSeriallyOnTheirThread) {
  std::atomic<int> wrong_thread{0}, outside{0}, inner_runs{0};
  parallel_chunks(16, 4, [&](std::int64_t) {
    if (!inside_parallel_region()) outside++;
    const auto me = std::this_thread::get_id();
    parallel_chunks(50, 4, [&](std::int64_t) {
      inner_runs++;
      if (std::this_thread::get_id() != me) wrong_thread++;
    });
  });
  EXPECT_EQ(outside.load(), 0);
  EXPECT_EQ(wrong_thread.load(), 0);
  EXPECT_EQ(inner_runs.load(), 16 * 50);
}

TEST(ThreadPool, ManyTinyRegionsInARow) {
  std::vector<std::int64_t> out(4);
  std::int64_t total = 0;
  for (int region = 0; region < 200000; ++region) {
    parallel_chunks(4, 2, [&](std::int64_t c) { out[c] = region + c; });
    total += out[0] + out[1] + out[2] + out[3];
  }
  const std::int64_t R = 200000;
  EXPECT_EQ(total, 4 * (R * (R - 1) / 2) + 6 * R);
}

TEST(ThreadPool, ConcurrentCallersEachGetTheirOwnResults) {
  std::vector<std::thread> callers;
  std::vector<std::int64_t> sums(4, 0);
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&, t] {
      for (int rep = 0; rep < 200; ++rep) {
        std::vector<std::int64_t> part(64);
        parallel_chunks(64, 3, [&](std::int64_t c) { part[c] = c * (t + 1); });
        for (auto v : part) sums[t] += v;
      }
    });
  }
  for (auto& c : callers) c.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(sums[t], 200 * 2016 * (t + 1));
}

TEST(ThreadPool, WorksInAForkedChild) {
  parallel_chunks(8, 2, [](std::int64_t) {});  // the parent's workers exist
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(20);  // a hang fails the test instead of blocking it
    std::atomic<int> n{0};
    parallel_chunks(100, 2, [&](std::int64_t) { n++; });
    _exit(n.load() == 100 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST(WorkRule, SmallWorkUsesFewerThreads) {
  EXPECT_EQ(threads_for(8, 0), 1);
  EXPECT_EQ(threads_for(8, 40e3), 1);          // a 50 x 200 float32 A
  EXPECT_EQ(threads_for(8, 3 * kBytesPerThread), 3);
  EXPECT_EQ(threads_for(8, 1e12), 8);
  EXPECT_EQ(threads_for(1, 1e12), 1);
}

TEST(WorkRule, TinyRangesRunInlineOnTheCaller) {
  const auto me = std::this_thread::get_id();
  int elsewhere = 0;  // not atomic: everything must run on this thread
  parallel_ranges(100000, 1000, 8, 40e3, [&](std::int64_t, std::int64_t) {
    if (std::this_thread::get_id() != me) ++elsewhere;
  });
  EXPECT_EQ(elsewhere, 0);
}

}  // namespace
}  // namespace chita::cpu
