// Parallel loops over fixed chunks (thread_pool.h), with a fixed reduction order, so that
// results do not depend on the thread count: callers index results by chunk, never by
// thread.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/thread_count.h"  // resolve_threads
#include "cpu/thread_pool.h"   // parallel_chunks

namespace chita::cpu {

// Fixed chunk length for reductions: partials are summed in chunk order, whatever the
// number of threads.
constexpr std::int64_t kReduceChunk = 1 << 14;

// Work rule: one thread per this many bytes of memory traffic at most. Waking a thread
// costs microseconds, and far more on a busy machine, so small problems run on fewer
// threads (a 50 x 200 float32 A, 40 KB, runs inline).
constexpr double kBytesPerThread = 256 << 10;

// The threads worth using for `bytes` of work: min(threads, bytes / 256 KB), at least 1.
inline int threads_for(int threads, double bytes) {
  const double by_work = bytes / kBytesPerThread;
  return by_work < threads ? std::max(1, static_cast<int>(by_work)) : threads;
}

// Runs body(begin, end) over [0, m) in chunks of `grain`, handed out dynamically (a thread
// the OS or hypervisor delays does not hold the others up: A^T r went from 23-25 to 27-29
// GB/s on a 2-core VM), on at most threads_for(threads, bytes) threads; `bytes` is the
// loop's memory traffic. The first exception thrown by body is re-thrown here.
template <typename Body>
void parallel_ranges(std::int64_t m, std::int64_t grain, int threads, double bytes, Body body) {
  const std::int64_t chunks = (m + grain - 1) / grain;
  parallel_chunks(chunks, threads_for(threads, bytes), [&](std::int64_t c) {
    const std::int64_t begin = c * grain;
    body(begin, std::min(m, begin + grain));
  });
}

// sum over chunks [c * kReduceChunk, ...) of chunk_sum(begin, end), in chunk order;
// `bytes_per_item` is the memory traffic per index.
template <typename ChunkSum>
double ordered_sum(std::int64_t m, int threads, double bytes_per_item, ChunkSum chunk_sum) {
  const std::int64_t chunks = (m + kReduceChunk - 1) / kReduceChunk;
  if (chunks <= 1) return m > 0 ? 0.0 + chunk_sum(0, m) : 0.0;
  std::vector<double> partial(static_cast<std::size_t>(chunks), 0.0);
  parallel_ranges(m, kReduceChunk, threads, bytes_per_item * m,
                  [&](std::int64_t b, std::int64_t e) { partial[b / kReduceChunk] = chunk_sum(b, e); });
  double total = 0.0;
  for (double v : partial) total += v;
  return total;
}

// out[0..n) = sum over c < chunks of partial[c * n .. c * n + n), added in chunk order (so
// the result does not depend on which thread filled which chunk).
inline void sum_partials_in_order(const std::vector<double>& partial, std::int64_t chunks,
                                  std::int64_t n, double* out) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = 0.0;
  for (std::int64_t c = 0; c < chunks; ++c)
    for (std::int64_t i = 0; i < n; ++i) out[i] += partial[c * n + i];
}

}  // namespace chita::cpu
