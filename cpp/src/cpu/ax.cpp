// out = A_S x_S (or A x for all columns): sum of scaled columns, into an n-vector.
#include <algorithm>
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

constexpr std::int64_t kMinChunkColumns = 256;
constexpr std::int64_t kMaxChunks = 256;  // bounds the partial-sum memory at 256 n doubles

// acc[0..n) += sum over t in [begin, end) of x[t] * column(idx[t]) in float64, four columns
// per sweep of acc. Zero coefficients are skipped: trial supports touch few new columns.
template <typename E>
__attribute__((target_clones("avx2", "default"))) void axpy_columns(
    const typename E::Stored* a, std::int64_t n, const std::int64_t* idx, const float* x,
    std::int64_t begin, std::int64_t end, double* acc) {
  const typename E::Stored* col[4];
  double coef[4];
  int filled = 0;
  auto flush = [&](int count) {
    if (count == 4) {
#pragma omp simd
      for (std::int64_t i = 0; i < n; ++i)
        acc[i] += coef[0] * E::load(col[0], i) + coef[1] * E::load(col[1], i) +
                  coef[2] * E::load(col[2], i) + coef[3] * E::load(col[3], i);
    } else {
      for (int c = 0; c < count; ++c) {
#pragma omp simd
        for (std::int64_t i = 0; i < n; ++i) acc[i] += coef[c] * E::load(col[c], i);
      }
    }
  };
  for (std::int64_t t = begin; t < end; ++t) {
    if (x[t] == 0.0f) continue;
    col[filled] = a + (idx ? idx[t] : t) * n;
    coef[filled] = x[t];
    if (++filled == 4) flush(4), filled = 0;
  }
  flush(filled);
}

template <typename E>
void add_scaled_columns_range(const typename E::Stored* a, std::int64_t n,
                              const std::int64_t* idx, const float* x, std::int64_t begin,
                              std::int64_t end, double* acc) {
  if (!avx2::available())
    axpy_columns<E>(a, n, idx, x, begin, end, acc);
  else if constexpr (std::is_same_v<E, F32>)
    avx2::axpy_f32(a, n, idx, x, begin, end, acc);
  else
    avx2::axpy_bf16(a, n, idx, x, begin, end, acc);
}

template <typename E>
void ax_colmajor(const MatrixView& A, const std::int64_t* idx, const float* x, std::int64_t k,
                 double* out, int threads) {
  const auto* a = static_cast<const typename E::Stored*>(A.data);
  const std::int64_t n = A.n;
  // The chunking depends on k only, so the summation order is the same for any threads.
  const std::int64_t chunk =
      std::max(kMinChunkColumns, (k + kMaxChunks - 1) / kMaxChunks);
  const std::int64_t chunks = (k + chunk - 1) / chunk;
  std::vector<double> partial(static_cast<std::size_t>(chunks * n), 0.0);
  const double bytes = static_cast<double>(k) * n * A.element_bytes();
  parallel_ranges(chunks, 1, threads, bytes, [&](std::int64_t c, std::int64_t) {
    const std::int64_t begin = c * chunk, end = std::min(k, begin + chunk);
    add_scaled_columns_range<E>(a, n, idx, x, begin, end, &partial[c * n]);
  });
  sum_partials_in_order(partial, chunks, n, out);
}

template <typename E>
void ax_rowmajor(const MatrixView& A, const std::int64_t* idx, const float* x, std::int64_t k,
                 double* out, int threads) {
  const auto* a = static_cast<const typename E::Stored*>(A.data);
  const double bytes = static_cast<double>(k) * A.n * A.element_bytes();
  parallel_ranges(A.n, 1, threads, bytes, [&](std::int64_t i, std::int64_t) {
    const typename E::Stored* row = a + i * A.p;
    double acc = 0.0;
    if (idx) {
      for (std::int64_t t = 0; t < k; ++t) acc += static_cast<double>(x[t]) * E::load(row, idx[t]);
    } else {
#pragma omp simd reduction(+ : acc)
      for (std::int64_t j = 0; j < k; ++j) acc += static_cast<double>(x[j]) * E::load(row, j);
    }
    out[i] = acc;
  });
}

}  // namespace

void add_scaled_columns(const MatrixView& A, const std::int64_t* idx, const float* x,
                        std::int64_t begin, std::int64_t end, double* acc) {
  with_element(A.dtype == DType::bf16, [&](auto e) {
    using E = decltype(e);
    add_scaled_columns_range<E>(static_cast<const typename E::Stored*>(A.data), A.n, idx, x,
                                begin, end, acc);
  });
}

void ax(const MatrixView& A, const std::int64_t* idx, const float* x, std::int64_t k,
        double* out, int threads) {
  with_element(A.dtype == DType::bf16, [&](auto e) {
    using E = decltype(e);
    if (A.layout == Layout::col_major)
      ax_colmajor<E>(A, idx, x, k, out, threads);
    else
      ax_rowmajor<E>(A, idx, x, k, out, threads);
  });
}

}  // namespace chita::cpu
