// Software prefetch of the columns ahead of the one being read, shared by the hand-written
// column kernels (AVX2 and AVX-512).
#pragma once
#include <xmmintrin.h>

#include <algorithm>
#include <cstdint>

namespace chita::cpu {

// Two tiers: into L1 about 8 KB ahead of the column being read, and into L2 about 16 KB
// ahead. The L2 tier keeps more misses in flight than the L1 fill buffers allow; on a
// 2-core Xeon VM (Emerald Rapids class) it lifted A^T r from 0.62 to 0.68 of memcpy's
// bandwidth (bench/results/kernels_cpu.md). Both matter most for gathered supports, where
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

// The column loop of A_S x: calls add_group(col, coef, count) on groups of up to four
// columns with non-zero coefficients, in order, prefetching ahead. Zero coefficients are
// skipped (trial supports touch few new columns) and their columns are not prefetched.
template <typename AddGroup>
inline __attribute__((always_inline)) void for_nonzero_column_groups(
    const std::int64_t* idx, const float* x, std::int64_t begin, std::int64_t end,
    std::int64_t column_bytes, const char* base, const AddGroup& add_group) {
  const PrefetchDistance ahead(column_bytes);
  const auto column = [=](std::int64_t t) { return base + (idx ? idx[t] : t) * column_bytes; };
  const char* col[4];
  double coef[4];
  int filled = 0;
  for (std::int64_t t = begin; t < end; ++t) {
    if (t + ahead.near < end && x[t + ahead.near] != 0.0f)
      prefetch_bytes<_MM_HINT_T0>(column(t + ahead.near), column_bytes);
    if (t + ahead.far < end && x[t + ahead.far] != 0.0f)
      prefetch_bytes<_MM_HINT_T1>(column(t + ahead.far), column_bytes);
    if (x[t] == 0.0f) continue;
    col[filled] = column(t);
    coef[filled] = x[t];
    if (++filled == 4) add_group(col, coef, 4), filled = 0;
  }
  if (filled) add_group(col, coef, filled);
}

}  // namespace chita::cpu
