// out = A^T r: the one full pass over A per IHT iteration; it sets the speed floor.
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cpu/columns_avx2.h"
#include "cpu/element.h"
#include "cpu/kernels.h"
#include "cpu/parallel.h"

namespace chita::cpu {
namespace {

constexpr std::int64_t kColumnGrain = 1024;  // columns per scheduling unit
constexpr std::int64_t kRowMajorTile = 2048; // columns accumulated together (row-major A)

// Column-major: each column is a contiguous dot product with r. AVX2 picked at run time.
template <typename E>
__attribute__((target_clones("avx2", "default"))) void atr_colmajor_range(
    const typename E::Stored* a, std::int64_t n, const float* r, const std::int64_t* idx,
    std::int64_t begin, std::int64_t end, float* out) {
  for (std::int64_t t = begin; t < end; ++t) {
    const typename E::Stored* col = a + (idx ? idx[t] : t) * n;
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (std::int64_t i = 0; i < n; ++i) acc += E::load(col, i) * r[i];
    out[t] = acc;
  }
}

// bfloat16, column-major, n even: read each column as n/2 32-bit words, each holding two
// bf16 values. Masking and shifting give both as floats with no widening shuffles; r is
// split once into its even and odd entries to match.
__attribute__((target_clones("avx2", "default"))) void atr_bf16_pairs_range(
    const std::uint16_t* a, std::int64_t n, const float* r_even, const float* r_odd,
    const std::int64_t* idx, std::int64_t begin, std::int64_t end, float* out) {
  const std::int64_t half = n / 2;
  for (std::int64_t t = begin; t < end; ++t) {
    const auto* col = reinterpret_cast<const std::uint32_t*>(a + (idx ? idx[t] : t) * n);
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (std::int64_t i = 0; i < half; ++i) {
      const std::uint32_t w = col[i];
      acc += __builtin_bit_cast(float, w << 16) * r_even[i] +
             __builtin_bit_cast(float, w & 0xffff0000u) * r_odd[i];
    }
    out[t] = acc;
  }
}

// Row-major: accumulate r_i * row_i over a tile of columns, streaming each row slice.
template <typename E>
__attribute__((target_clones("avx2", "default"))) void atr_rowmajor_tile(
    const typename E::Stored* a, std::int64_t n, std::int64_t p, const float* r,
    std::int64_t begin, std::int64_t end, float* out) {
  for (std::int64_t j = begin; j < end; ++j) out[j] = 0.0f;
  for (std::int64_t i = 0; i < n; ++i) {
    const typename E::Stored* row = a + i * p;
    const float ri = r[i];
#pragma omp simd
    for (std::int64_t j = begin; j < end; ++j) out[j] += ri * E::load(row, j);
  }
}

template <typename E>
void atr_impl(const MatrixView& A, const float* r, const std::int64_t* idx, std::int64_t k,
              float* out, int threads) {
  const auto* a = static_cast<const typename E::Stored*>(A.data);
  if constexpr (std::is_same_v<E, BF16>) {
    const bool aligned_pairs = reinterpret_cast<std::uintptr_t>(A.data) % 4 == 0;
    if (A.layout == Layout::col_major && A.n % 2 == 0 && aligned_pairs) {
      std::vector<float> r_even(A.n / 2), r_odd(A.n / 2);
      for (std::int64_t i = 0; i < A.n / 2; ++i) r_even[i] = r[2 * i], r_odd[i] = r[2 * i + 1];
      const bool fast = avx2::available();
      parallel_ranges(k, kColumnGrain, threads, [&](std::int64_t b, std::int64_t e) {
        if (fast)
          avx2::atr_bf16_pairs(a, A.n, r_even.data(), r_odd.data(), idx, b, e, out);
        else
          atr_bf16_pairs_range(a, A.n, r_even.data(), r_odd.data(), idx, b, e, out);
      });
      return;
    }
  }
  if (A.layout == Layout::col_major) {
    const bool fast = std::is_same_v<E, F32> && avx2::available();
    parallel_ranges(k, kColumnGrain, threads, [&](std::int64_t b, std::int64_t e) {
      if constexpr (std::is_same_v<E, F32>) {
        if (fast) return avx2::atr_f32(a, A.n, r, idx, b, e, out);
      }
      atr_colmajor_range<E>(a, A.n, r, idx, b, e, out);
    });
  } else if (!idx) {
    parallel_ranges(k, kRowMajorTile, threads, [&](std::int64_t b, std::int64_t e) {
      atr_rowmajor_tile<E>(a, A.n, A.p, r, b, e, out);
    });
  } else {  // row-major gather: strided, used only on supports
    parallel_ranges(k, kColumnGrain, threads, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t t = b; t < e; ++t) {
        float acc = 0.0f;
        for (std::int64_t i = 0; i < A.n; ++i) acc += E::load(a, i * A.p + idx[t]) * r[i];
        out[t] = acc;
      }
    });
  }
}

}  // namespace

void atr(const MatrixView& A, const float* r, float* out, int threads) {
  with_element(A.dtype == DType::bf16,
               [&](auto e) { atr_impl<decltype(e)>(A, r, nullptr, A.p, out, threads); });
}

void atr_subset(const MatrixView& A, const float* r, const std::int64_t* idx, std::int64_t k,
                float* out, int threads) {
  with_element(A.dtype == DType::bf16,
               [&](auto e) { atr_impl<decltype(e)>(A, r, idx, k, out, threads); });
}

}  // namespace chita::cpu
