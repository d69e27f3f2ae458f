// out = A^T r: the one full pass over A per IHT iteration; it sets the speed floor.
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cpu/column_ranges.h"
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

// Single-thread A^T r over columns [begin, end) (or idx[begin..end)), for one dtype.
template <typename E>
void atr_range(const MatrixView& A, const PreparedResidual& r, const std::int64_t* idx,
               std::int64_t begin, std::int64_t end, float* out) {
  const auto* a = static_cast<const typename E::Stored*>(A.data);
  if constexpr (std::is_same_v<E, BF16>) {
    if (r.bf16_pairs) {
      if (avx2::available())
        return avx2::atr_bf16_pairs(a, A.n, r.even.data(), r.odd.data(), idx, begin, end, out);
      return atr_bf16_pairs_range(a, A.n, r.even.data(), r.odd.data(), idx, begin, end, out);
    }
  }
  if (A.layout == Layout::col_major) {
    if constexpr (std::is_same_v<E, F32>) {
      if (avx2::available()) return avx2::atr_f32(a, A.n, r.r, idx, begin, end, out);
    }
    atr_colmajor_range<E>(a, A.n, r.r, idx, begin, end, out);
  } else if (!idx) {
    atr_rowmajor_tile<E>(a, A.n, A.p, r.r, begin, end, out);
  } else {  // row-major gather: strided, used only on supports
    for (std::int64_t t = begin; t < end; ++t) {
      float acc = 0.0f;
      for (std::int64_t i = 0; i < A.n; ++i) acc += E::load(a, i * A.p + idx[t]) * r.r[i];
      out[t] = acc;
    }
  }
}

void atr_impl(const MatrixView& A, const float* r, const std::int64_t* idx, std::int64_t k,
              float* out, int threads) {
  const PreparedResidual prepared(A, r);
  const std::int64_t grain = A.layout == Layout::row_major && !idx ? kRowMajorTile : kColumnGrain;
  const double bytes = static_cast<double>(k) * A.n * A.element_bytes();
  parallel_ranges(k, grain, threads, bytes, [&](std::int64_t b, std::int64_t e) {
    atr_columns(A, prepared, idx, b, e, out);
  });
}

}  // namespace

PreparedResidual::PreparedResidual(const MatrixView& A, const float* r_in) : r(r_in) {
  // bfloat16, column-major, n even, 4-byte aligned: columns are read as 32-bit words.
  bf16_pairs = A.dtype == DType::bf16 && A.layout == Layout::col_major && A.n % 2 == 0 &&
               reinterpret_cast<std::uintptr_t>(A.data) % 4 == 0;
  if (!bf16_pairs) return;
  even.resize(A.n / 2), odd.resize(A.n / 2);
  for (std::int64_t i = 0; i < A.n / 2; ++i) even[i] = r[2 * i], odd[i] = r[2 * i + 1];
}

void atr_columns(const MatrixView& A, const PreparedResidual& r, const std::int64_t* idx,
                 std::int64_t begin, std::int64_t end, float* out) {
  with_element(A.dtype == DType::bf16,
               [&](auto e) { atr_range<decltype(e)>(A, r, idx, begin, end, out); });
}

void atr(const MatrixView& A, const float* r, float* out, int threads) {
  atr_impl(A, r, nullptr, A.p, out, threads);
}

void atr_subset(const MatrixView& A, const float* r, const std::int64_t* idx, std::int64_t k,
                float* out, int threads) {
  atr_impl(A, r, idx, k, out, threads);
}

}  // namespace chita::cpu
