// OpenMP helpers with a fixed reduction order, so results do not depend on thread count.
#pragma once
#include <omp.h>

#include <cstdint>
#include <exception>
#include <mutex>
#include <vector>

namespace chita::cpu {

// Fixed chunk length for reductions: partials are summed in chunk order, whatever the
// number of threads.
constexpr std::int64_t kReduceChunk = 1 << 14;

inline int resolve_threads(int threads) { return threads > 0 ? threads : omp_get_max_threads(); }

// sum over chunks [c * kReduceChunk, ...) of chunk_sum(begin, end), in chunk order.
template <typename ChunkSum>
double ordered_sum(std::int64_t m, int threads, ChunkSum chunk_sum) {
  const std::int64_t chunks = (m + kReduceChunk - 1) / kReduceChunk;
  std::vector<double> partial(static_cast<std::size_t>(chunks), 0.0);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::int64_t begin = c * kReduceChunk;
    const std::int64_t end = begin + kReduceChunk < m ? begin + kReduceChunk : m;
    partial[c] = chunk_sum(begin, end);
  }
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

// Runs body(begin, end) over [0, m) in parallel, chunks of `grain` handed out dynamically:
// a thread the OS or hypervisor delays does not hold the others up (A^T r went from 23-25
// to 27-29 GB/s on a 2-core VM). Callers index results by chunk, never by thread. The first
// exception thrown inside the region is re-thrown after it (none may escape an OpenMP
// region).
template <typename Body>
void parallel_ranges(std::int64_t m, std::int64_t grain, int threads, Body body) {
  const std::int64_t chunks = (m + grain - 1) / grain;
  std::exception_ptr error;
  std::mutex error_mutex;
#pragma omp parallel for num_threads(threads) schedule(dynamic)
  for (std::int64_t c = 0; c < chunks; ++c) {
    try {
      const std::int64_t begin = c * grain;
      body(begin, begin + grain < m ? begin + grain : m);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace chita::cpu
