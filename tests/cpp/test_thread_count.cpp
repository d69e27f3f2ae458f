// Thread counts: environment parsing and capping (cpu/thread_count.h). The cgroup parsing
// is tested from Python with fake files (tests/test_threads.py).
#include <gtest/gtest.h>

#include <cstdlib>

#include "cpu/thread_count.h"

namespace chita::cpu {
namespace {

TEST(ThreadCount, ParsesEnvironmentValues) {
  EXPECT_EQ(parse_thread_count(nullptr), 0);
  EXPECT_EQ(parse_thread_count(""), 0);
  EXPECT_EQ(parse_thread_count("4"), 4);
  EXPECT_EQ(parse_thread_count(" 3 "), 3);
  EXPECT_EQ(parse_thread_count("4,2"), 4);  // OpenMP's nested form
  EXPECT_EQ(parse_thread_count("0"), 0);
  EXPECT_EQ(parse_thread_count("-2"), 0);
  EXPECT_EQ(parse_thread_count("four"), 0);
  EXPECT_EQ(parse_thread_count("4x"), 0);
}

TEST(ThreadCount, ExplicitAndEnvironmentCountsAreCapped) {
  const int cpus = available_cpus();
  EXPECT_GE(cpus, 1);
  EXPECT_LE(cpus, affinity_cpus());
  EXPECT_EQ(resolve_threads(10000), cpus);
  EXPECT_EQ(resolve_threads(1), 1);
  unsetenv("CHITA_NUM_THREADS");
  setenv("OMP_NUM_THREADS", "100000", 1);
  EXPECT_EQ(default_threads().threads, cpus);
  EXPECT_EQ(default_threads().source, "OMP_NUM_THREADS");
  setenv("CHITA_NUM_THREADS", "1", 1);  // ours wins over OpenMP's
  EXPECT_EQ(resolve_threads(0), 1);
  EXPECT_EQ(default_threads().source, "CHITA_NUM_THREADS");
  unsetenv("CHITA_NUM_THREADS");
  unsetenv("OMP_NUM_THREADS");
  EXPECT_EQ(resolve_threads(0), cpus);
}

}  // namespace
}  // namespace chita::cpu
