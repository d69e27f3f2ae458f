// AVX2 + FMA column kernels. Why by hand: the compiler's reduction keeps one vector
// accumulator (a 4-cycle add chain per 8 floats) and no FMA in the portable "avx2" clone,
// which caps A^T r near 60% of the read bandwidth; four accumulators and software
// prefetch of the next columns reach it. Each column is still reduced by one thread in a
// fixed order, so results do not depend on the thread count.
#include "cpu/columns_avx2.h"

#include <immintrin.h>

#include <cstdlib>
#include <cstring>

#include "cpu/prefetch.h"

namespace chita::cpu::avx2 {
namespace {

#define CHITA_AVX2 __attribute__((target("avx2,fma")))

CHITA_AVX2 inline float horizontal_sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// bf16 bits in the high half of each 32-bit lane: the even element shifted up, the odd
// element masked in place.
CHITA_AVX2 inline __m256 bf16_even(__m256i w) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
CHITA_AVX2 inline __m256 bf16_odd(__m256i w) {
  const __m256i high = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  return _mm256_castsi256_ps(_mm256_and_si256(w, high));
}

CHITA_AVX2 float dot_f32(const float* col, const float* r, std::int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  std::int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(col + i), _mm256_loadu_ps(r + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(col + i + 8), _mm256_loadu_ps(r + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(col + i + 16), _mm256_loadu_ps(r + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(col + i + 24), _mm256_loadu_ps(r + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8)
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(col + i), _mm256_loadu_ps(r + i), s0);
  float acc = horizontal_sum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < n; ++i) acc += col[i] * r[i];
  return acc;
}

CHITA_AVX2 float dot_bf16_pairs(const std::uint32_t* col, const float* r_even,
                                const float* r_odd, std::int64_t half) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  std::int64_t i = 0;
  for (; i + 16 <= half; i += 16) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(col + i));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(col + i + 8));
    s0 = _mm256_fmadd_ps(bf16_even(w0), _mm256_loadu_ps(r_even + i), s0);
    s1 = _mm256_fmadd_ps(bf16_odd(w0), _mm256_loadu_ps(r_odd + i), s1);
    s2 = _mm256_fmadd_ps(bf16_even(w1), _mm256_loadu_ps(r_even + i + 8), s2);
    s3 = _mm256_fmadd_ps(bf16_odd(w1), _mm256_loadu_ps(r_odd + i + 8), s3);
  }
  for (; i + 8 <= half; i += 8) {
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(col + i));
    s0 = _mm256_fmadd_ps(bf16_even(w), _mm256_loadu_ps(r_even + i), s0);
    s1 = _mm256_fmadd_ps(bf16_odd(w), _mm256_loadu_ps(r_odd + i), s1);
  }
  float acc = horizontal_sum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < half; ++i) {
    std::uint32_t lo = col[i] << 16, hi = col[i] & 0xffff0000u;
    float f_lo, f_hi;
    std::memcpy(&f_lo, &lo, 4);
    std::memcpy(&f_hi, &hi, 4);
    acc += f_lo * r_even[i] + f_hi * r_odd[i];
  }
  return acc;
}

CHITA_AVX2 inline __m256d low_half(__m256 v) {
  return _mm256_cvtps_pd(_mm256_castps256_ps128(v));
}
CHITA_AVX2 inline __m256d high_half(__m256 v) {
  return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
}

template <typename Load>
CHITA_AVX2 void add_columns(const char* const* col, const double* coef, int count,
                            std::int64_t n, double* acc, Load load8) {
  std::int64_t i = 0;
  if (count == 4) {
    const __m256d c0 = _mm256_set1_pd(coef[0]), c1 = _mm256_set1_pd(coef[1]);
    const __m256d c2 = _mm256_set1_pd(coef[2]), c3 = _mm256_set1_pd(coef[3]);
    for (; i + 8 <= n; i += 8) {
      const __m256 v0 = load8(col[0], i), v1 = load8(col[1], i);
      const __m256 v2 = load8(col[2], i), v3 = load8(col[3], i);
      __m256d lo = _mm256_loadu_pd(acc + i), hi = _mm256_loadu_pd(acc + i + 4);
      lo = _mm256_fmadd_pd(c0, low_half(v0), lo), hi = _mm256_fmadd_pd(c0, high_half(v0), hi);
      lo = _mm256_fmadd_pd(c1, low_half(v1), lo), hi = _mm256_fmadd_pd(c1, high_half(v1), hi);
      lo = _mm256_fmadd_pd(c2, low_half(v2), lo), hi = _mm256_fmadd_pd(c2, high_half(v2), hi);
      lo = _mm256_fmadd_pd(c3, low_half(v3), lo), hi = _mm256_fmadd_pd(c3, high_half(v3), hi);
      _mm256_storeu_pd(acc + i, lo);
      _mm256_storeu_pd(acc + i + 4, hi);
    }
  }
  // Rows left over by the four-column sweep, or fewer than four columns.
  for (int c = 0; c < count; ++c)
    for (std::int64_t j = i; j < n; ++j)
      acc[j] += coef[c] * static_cast<double>(load8.scalar(col[c], j));
}

template <typename Load>
CHITA_AVX2 void axpy_groups(const std::int64_t* idx, const float* x, std::int64_t begin,
                            std::int64_t end, std::int64_t n, std::int64_t column_bytes,
                            const char* base, double* acc, Load load8) {
  const PrefetchDistance ahead(column_bytes);
  const auto column = [=](std::int64_t t) { return base + (idx ? idx[t] : t) * column_bytes; };
  const char* col[4];
  double coef[4];
  int filled = 0;
  for (std::int64_t t = begin; t < end; ++t) {
    // Zero coefficients are skipped (trial supports touch few new columns): their columns
    // are not prefetched either.
    if (t + ahead.near < end && x[t + ahead.near] != 0.0f)
      prefetch_bytes<_MM_HINT_T0>(column(t + ahead.near), column_bytes);
    if (t + ahead.far < end && x[t + ahead.far] != 0.0f)
      prefetch_bytes<_MM_HINT_T1>(column(t + ahead.far), column_bytes);
    if (x[t] == 0.0f) continue;
    col[filled] = column(t);
    coef[filled] = x[t];
    if (++filled == 4) add_columns(col, coef, 4, n, acc, load8), filled = 0;
  }
  add_columns(col, coef, filled, n, acc, load8);
}

struct LoadF32 {
  CHITA_AVX2 __m256 operator()(const char* col, std::int64_t i) const {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(col) + i);
  }
  float scalar(const char* col, std::int64_t i) const {
    return reinterpret_cast<const float*>(col)[i];
  }
};

struct LoadBF16 {
  CHITA_AVX2 __m256 operator()(const char* col, std::int64_t i) const {
    const auto* halves = reinterpret_cast<const std::uint16_t*>(col) + i;
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(halves));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  float scalar(const char* col, std::int64_t i) const {
    const std::uint32_t bits =
        static_cast<std::uint32_t>(reinterpret_cast<const std::uint16_t*>(col)[i]) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
};

}  // namespace

bool available() {
  // CHITA_NO_AVX2=1 forces the portable loops (used by the tests to cover both paths).
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                         !std::getenv("CHITA_NO_AVX2");
  return ok;
}

CHITA_AVX2 void atr_f32(const float* a, std::int64_t n, const float* r, const std::int64_t* idx,
                        std::int64_t begin, std::int64_t end, float* out) {
  const PrefetchDistance ahead(n * 4);
  const auto column = [=](std::int64_t t) { return a + (idx ? idx[t] : t) * n; };
  for (std::int64_t t = begin; t < end; ++t) {
    prefetch_ahead(ahead, t, end, n * 4, column);
    out[t] = dot_f32(column(t), r, n);
  }
}

CHITA_AVX2 void atr_bf16_pairs(const std::uint16_t* a, std::int64_t n, const float* r_even,
                               const float* r_odd, const std::int64_t* idx, std::int64_t begin,
                               std::int64_t end, float* out) {
  const PrefetchDistance ahead(n * 2);
  const auto column = [=](std::int64_t t) { return a + (idx ? idx[t] : t) * n; };
  for (std::int64_t t = begin; t < end; ++t) {
    prefetch_ahead(ahead, t, end, n * 2, column);
    const auto* col = reinterpret_cast<const std::uint32_t*>(column(t));
    out[t] = dot_bf16_pairs(col, r_even, r_odd, n / 2);
  }
}

CHITA_AVX2 void axpy_f32(const float* a, std::int64_t n, const std::int64_t* idx, const float* x,
                         std::int64_t begin, std::int64_t end, double* acc) {
  axpy_groups(idx, x, begin, end, n, n * 4, reinterpret_cast<const char*>(a), acc, LoadF32{});
}

CHITA_AVX2 void axpy_bf16(const std::uint16_t* a, std::int64_t n, const std::int64_t* idx,
                          const float* x, std::int64_t begin, std::int64_t end, double* acc) {
  axpy_groups(idx, x, begin, end, n, n * 2, reinterpret_cast<const char*>(a), acc, LoadBF16{});
}

}  // namespace chita::cpu::avx2
