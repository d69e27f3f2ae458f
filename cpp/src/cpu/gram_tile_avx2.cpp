// The Gram tile with AVX2 + FMA (gram_tile.h). Twelve ymm accumulators hold the 12 x 4
// tile, three hold the rows' values at depth d, one the broadcast column value: 16 of the
// 16 registers, 12 FMAs per 3 loads and 4 broadcasts.
#include <immintrin.h>

#include "cpu/gram_tile.h"

namespace chita::cpu::avx2 {

#define CHITA_AVX2 __attribute__((target("avx2,fma")))

CHITA_AVX2 inline void add(double* o, __m256d v) {
  _mm256_storeu_pd(o, _mm256_add_pd(_mm256_loadu_pd(o), v));
}

CHITA_AVX2 void gram_tile(const double* rows, std::int64_t quad_stride, const double* cols,
                          std::int64_t kc, double* out, std::int64_t ldo) {
  const double* a0 = rows;
  const double* a1 = rows + quad_stride;
  const double* a2 = rows + 2 * quad_stride;
  // C's tile is read once, after kc x 12 FMAs: fetch it now (from L3 or memory) so the
  // adds at the end do not wait for it.
  for (int c = 0; c < 4; ++c) {
    _mm_prefetch(reinterpret_cast<const char*>(out + c * ldo), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(out + c * ldo + 11), _MM_HINT_T0);
  }
  __m256d c00 = _mm256_setzero_pd(), c10 = c00, c20 = c00, c01 = c00, c11 = c00, c21 = c00;
  __m256d c02 = c00, c12 = c00, c22 = c00, c03 = c00, c13 = c00, c23 = c00;
  for (std::int64_t d = 0; d < kc; ++d) {
    const __m256d x0 = _mm256_loadu_pd(a0 + 4 * d);
    const __m256d x1 = _mm256_loadu_pd(a1 + 4 * d);
    const __m256d x2 = _mm256_loadu_pd(a2 + 4 * d);
    __m256d y = _mm256_broadcast_sd(cols + 4 * d);
    c00 = _mm256_fmadd_pd(x0, y, c00), c10 = _mm256_fmadd_pd(x1, y, c10);
    c20 = _mm256_fmadd_pd(x2, y, c20);
    y = _mm256_broadcast_sd(cols + 4 * d + 1);
    c01 = _mm256_fmadd_pd(x0, y, c01), c11 = _mm256_fmadd_pd(x1, y, c11);
    c21 = _mm256_fmadd_pd(x2, y, c21);
    y = _mm256_broadcast_sd(cols + 4 * d + 2);
    c02 = _mm256_fmadd_pd(x0, y, c02), c12 = _mm256_fmadd_pd(x1, y, c12);
    c22 = _mm256_fmadd_pd(x2, y, c22);
    y = _mm256_broadcast_sd(cols + 4 * d + 3);
    c03 = _mm256_fmadd_pd(x0, y, c03), c13 = _mm256_fmadd_pd(x1, y, c13);
    c23 = _mm256_fmadd_pd(x2, y, c23);
  }
  add(out, c00), add(out + 4, c10), add(out + 8, c20);
  out += ldo;
  add(out, c01), add(out + 4, c11), add(out + 8, c21);
  out += ldo;
  add(out, c02), add(out + 4, c12), add(out + 8, c22);
  out += ldo;
  add(out, c03), add(out + 4, c13), add(out + 8, c23);
}

}  // namespace chita::cpu::avx2
