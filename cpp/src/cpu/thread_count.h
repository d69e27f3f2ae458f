// How many threads the CPU kernels use: the CPUs this process may run on (its affinity
// mask, capped by its cgroup's CPU quota), or CHITA_NUM_THREADS / OMP_NUM_THREADS when the
// user set one; never more than the CPUs available.
#pragma once
#include <string>

namespace chita::cpu {

// CPUs in this process's affinity mask (sched_getaffinity), at least 1.
int affinity_cpus();

// The CPU bandwidth quota of this process's cgroup in CPUs (quota / period; 1.5 means one
// and a half CPUs), the smallest found from its cgroup up to the hierarchy's root, over
// cgroup v2 (cpu.max) and v1 (cpu.cfs_quota_us / cpu.cfs_period_us); 0 when there is none.
// The paths are parameters so that tests can point them at fake files: `root` is
// prepended to every mount point read from `mountinfo`.
double cgroup_cpu_quota(const std::string& proc_cgroup = "/proc/self/cgroup",
                        const std::string& mountinfo = "/proc/self/mountinfo",
                        const std::string& root = "");

// min(affinity_cpus(), ceil(cgroup quota)) (the quota is read once per process).
int available_cpus();

// A thread count from an environment variable's text: its leading positive integer ("4",
// and "4,2" as OpenMP writes nested counts); 0 when there is none.
int parse_thread_count(const char* text);

struct ThreadDefault {
  int threads;         // capped at available_cpus()
  std::string source;  // "CHITA_NUM_THREADS", "OMP_NUM_THREADS", "cgroup cpu quota" or "cpu affinity"
};

// The count used when a call does not say: CHITA_NUM_THREADS, else OMP_NUM_THREADS, else
// the CPUs available. Read at every call, so a change to the environment takes effect.
ThreadDefault default_threads();

// requested > 0: min(requested, available_cpus()); else default_threads().threads.
int resolve_threads(int requested);

}  // namespace chita::cpu
