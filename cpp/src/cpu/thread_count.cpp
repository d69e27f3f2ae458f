// Thread counts from the affinity mask, the cgroup CPU quota and the environment.
#include "cpu/thread_count.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

namespace chita::cpu {
namespace {

struct Mount {
  std::string root, point;  // the cgroup path at the mount's root, and where it is mounted
};

// mountinfo escapes space, tab, newline and backslash as octal (\040 ...).
std::string unescape(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      const std::string oct = s.substr(i + 1, 3);
      if (oct.find_first_not_of("01234567") == std::string::npos) {
        out += static_cast<char>(std::stoi(oct, nullptr, 8));
        i += 3;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

bool has_token(const std::string& comma_list, const std::string& token) {
  std::stringstream ss(comma_list);
  for (std::string t; std::getline(ss, t, ',');)
    if (t == token) return true;
  return false;
}

// The cgroup v2 mount and the v1 mount that carries the cpu controller, from mountinfo
// lines "id parent major:minor root mount-point options [optional...] - fstype source super".
void find_mounts(const std::string& mountinfo, Mount* v2, Mount* v1_cpu) {
  std::ifstream in(mountinfo);
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string w; fields >> w;) f.push_back(w);
    const auto dash = std::find(f.begin(), f.end(), "-");
    if (f.size() < 5 || dash == f.end() || f.end() - dash < 4) continue;
    const std::string& fstype = dash[1];
    const std::string& super = dash[3];
    Mount m{unescape(f[3]), unescape(f[4])};
    if (fstype == "cgroup2" && v2->point.empty()) *v2 = m;
    if (fstype == "cgroup" && has_token(super, "cpu") && v1_cpu->point.empty()) *v1_cpu = m;
  }
}

// This process's cgroup paths from /proc/self/cgroup lines "id:controllers:path".
void find_paths(const std::string& proc_cgroup, std::string* v2, std::string* v1_cpu) {
  std::ifstream in(proc_cgroup);
  for (std::string line; std::getline(in, line);) {
    const auto a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string id = line.substr(0, a), controllers = line.substr(a + 1, b - a - 1);
    const std::string path = line.substr(b + 1);
    if (id == "0" && controllers.empty()) *v2 = path;
    else if (has_token(controllers, "cpu")) *v1_cpu = path;
  }
}

// CPUs allowed by one directory's files; 0 for none (or unreadable).
double v2_limit(const std::string& dir) {
  std::ifstream in(dir + "/cpu.max");
  std::string quota;
  double period = 0;
  if (!(in >> quota >> period) || quota == "max" || period <= 0) return 0;
  const double q = std::atof(quota.c_str());
  return q > 0 ? q / period : 0;
}

double v1_limit(const std::string& dir) {
  std::ifstream q(dir + "/cpu.cfs_quota_us"), p(dir + "/cpu.cfs_period_us");
  double quota = -1, period = 0;
  if (!(q >> quota) || !(p >> period) || quota <= 0 || period <= 0) return 0;
  return quota / period;
}

// The smallest limit from the process's cgroup directory up to the mount point.
double smallest_limit(const Mount& m, const std::string& path, const std::string& root,
                      double (*limit)(const std::string&)) {
  if (m.point.empty() || path.empty()) return 0;
  // The path relative to the mount's root; a path outside it (a container that sees only
  // its own subtree) means the mount point is the process's cgroup.
  std::string rel;
  if (m.root == "/") rel = path;
  else if (path.compare(0, m.root.size(), m.root) == 0 &&
           (path.size() == m.root.size() || path[m.root.size()] == '/'))
    rel = path.substr(m.root.size());
  const std::string top = root + m.point;
  std::string dir = top + (rel == "/" ? "" : rel);
  double best = 0;
  for (;;) {
    const double l = limit(dir);
    if (l > 0 && (best == 0 || l < best)) best = l;
    if (dir.size() <= top.size()) break;
    dir = dir.substr(0, dir.rfind('/'));
    if (dir.size() < top.size()) dir = top;
  }
  return best;
}

}  // namespace

int affinity_cpus() {
  for (int cpus = 1024; cpus <= (1 << 16); cpus *= 4) {
    cpu_set_t* set = CPU_ALLOC(cpus);
    if (!set) break;
    const std::size_t size = CPU_ALLOC_SIZE(cpus);
    CPU_ZERO_S(size, set);
    const int rc = sched_getaffinity(0, size, set);
    const int count = rc == 0 ? CPU_COUNT_S(size, set) : 0;
    CPU_FREE(set);
    if (rc == 0) return std::max(1, count);
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

double cgroup_cpu_quota(const std::string& proc_cgroup, const std::string& mountinfo,
                        const std::string& root) {
  Mount v2, v1;
  std::string path_v2, path_v1;
  find_mounts(mountinfo, &v2, &v1);
  find_paths(proc_cgroup, &path_v2, &path_v1);
  const double a = smallest_limit(v2, path_v2, root, v2_limit);
  const double b = smallest_limit(v1, path_v1, root, v1_limit);
  return a > 0 && b > 0 ? std::min(a, b) : std::max(a, b);
}

namespace {
// The quota in whole CPUs (rounded up: 1.5 CPUs of quota keep 2 threads busy), 0 for none;
// read once per process.
int quota_cpus() {
  static const int cpus = [] {
    const double q = cgroup_cpu_quota();
    return q > 0 ? std::max(1, static_cast<int>(std::ceil(q - 1e-9))) : 0;
  }();
  return cpus;
}
}  // namespace

int available_cpus() {
  const int affinity = affinity_cpus();
  return quota_cpus() > 0 ? std::min(affinity, quota_cpus()) : affinity;
}

int parse_thread_count(const char* text) {
  if (!text) return 0;
  while (*text == ' ' || *text == '\t') ++text;
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (end == text || v <= 0 || v > (1 << 20)) return 0;
  while (*end == ' ' || *end == '\t') ++end;
  return *end == '\0' || *end == ',' ? static_cast<int>(v) : 0;
}

ThreadDefault default_threads() {
  const int available = available_cpus();
  for (const char* name : {"CHITA_NUM_THREADS", "OMP_NUM_THREADS"}) {
    if (const int v = parse_thread_count(std::getenv(name)))
      return {std::min(v, available), name};
  }
  const bool by_quota = quota_cpus() > 0 && quota_cpus() < affinity_cpus();
  return {available, by_quota ? "cgroup cpu quota" : "cpu affinity"};
}

int resolve_threads(int requested) {
  return requested > 0 ? std::min(requested, available_cpus()) : default_threads().threads;
}

}  // namespace chita::cpu
