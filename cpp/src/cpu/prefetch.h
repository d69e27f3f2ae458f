// Software prefetch of the columns ahead of the one being read, for the hand-written column
// kernels (columns_avx2.cpp).
#pragma once
#include <xmmintrin.h>

#include <algorithm>
#include <cstdint>

namespace chita::cpu {

// Two tiers: into L1 about 8 KB ahead of the column being read, and into L2 about 16 KB
// ahead. The L2 tier keeps more misses in flight than the L1 fill buffers allow; on a
// 2-core Xeon VM (Emerald Rapids class) it lifted A^T r from 0.61-0.62 to 0.66-0.71 of
// memcpy's bandwidth (bench/results/kernels_cpu.md). Both matter most for gathered supports, where
// the hardware prefetcher cannot guess the next column.
struct PrefetchDistance {
  static constexpr std::int64_t kNearBytes = 8192, kFarBytes = 16384;
  std::int64_t near, far;  // in columns
  explicit PrefetchDistance(std::int64_t column_bytes)
      : near(std::max<std::int64_t>(1, kNearBytes / column_bytes)),
        far(std::max<std::int64_t>(2, kFarBytes / column_bytes)) {}
};

// always_inline: GCC treats a function holding only prefetches as free of side effects and
// deletes the calls it does not inline (it did so, silently, to a first version of A^T r).
template <int Hint>
inline __attribute__((always_inline)) void prefetch_bytes(const void* p, std::int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (std::int64_t off = 0; off < bytes; off += 64)
    _mm_prefetch(c + off, static_cast<_mm_hint>(Hint));
}

// Prefetches column t + near into L1 and column t + far into L2, when inside [.., end).
// column(t) gives column t's address.
template <typename Column>
inline __attribute__((always_inline)) void prefetch_ahead(const PrefetchDistance& d,
                                                          std::int64_t t, std::int64_t end,
                                                          std::int64_t column_bytes,
                                                          const Column& column) {
  if (t + d.near < end) prefetch_bytes<_MM_HINT_T0>(column(t + d.near), column_bytes);
  if (t + d.far < end) prefetch_bytes<_MM_HINT_T1>(column(t + d.far), column_bytes);
}

}  // namespace chita::cpu
