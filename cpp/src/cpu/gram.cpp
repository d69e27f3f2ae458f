// Small Gram matrices for the backsolve: A_S A_S^T (n x n) and A_S^T A_S (k x k), float64.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/element.h"
#include "cpu/kernels.h"
#include "cpu/parallel.h"
#include "host_blas.h"

namespace chita::cpu {
namespace {

constexpr std::int64_t kBlockColumns = 128;  // columns gathered per rank-update block

template <typename E>
double load(const MatrixView& A, std::int64_t i, std::int64_t j) {
  const auto* a = static_cast<const typename E::Stored*>(A.data);
  return A.layout == Layout::col_major ? E::load(a, j * A.n + i) : E::load(a, i * A.p + j);
}

using blas::dot;

// K[r, 0..r] += B_r . B_c for the rows r = 2q, 2q + 1 of the lower triangle: rows in pairs
// against columns in fours (blas::dot_2x4), the ragged edge by single dots. Which entry
// takes which path depends on (r, c) only.
inline void add_row_pair(const double* B, std::int64_t kb, std::int64_t n, std::int64_t q,
                         double* K) {
  const std::int64_t i = 2 * q;
  std::int64_t j = 0;
  if (i + 1 < n) {
    for (; j + 3 <= i; j += 4) {
      const double* y[4] = {&B[j * kb], &B[(j + 1) * kb], &B[(j + 2) * kb], &B[(j + 3) * kb]};
      double out[8];
      blas::dot_2x4(&B[i * kb], &B[(i + 1) * kb], y, kb, out);
      for (int c = 0; c < 4; ++c)
        K[i * n + j + c] += out[c], K[(i + 1) * n + j + c] += out[4 + c];
    }
  }
  for (std::int64_t r = i; r < std::min(i + 2, n); ++r)
    for (std::int64_t c = j; c <= r; ++c) K[r * n + c] += dot(&B[r * kb], &B[c * kb], kb);
}

// K += B B^T block by block, B = the block's columns gathered as n rows of length kb.
// Each entry of K is owned by one thread and summed in block order: thread-independent.
template <typename E>
void gram_rows_impl(const MatrixView& A, const std::int64_t* idx, std::int64_t k, double* K,
                    int threads) {
  const std::int64_t n = A.n;
  std::fill(K, K + n * n, 0.0);
  std::vector<double> B(static_cast<std::size_t>(n * kBlockColumns));
  for (std::int64_t begin = 0; begin < k; begin += kBlockColumns) {
    const std::int64_t kb = std::min(kBlockColumns, k - begin);
    const double gathered = static_cast<double>(n) * kb * A.element_bytes();
    parallel_ranges(n, 16, threads, gathered, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i)
        for (std::int64_t t = 0; t < kb; ++t) B[i * kb + t] = load<E>(A, i, idx[begin + t]);
    });
    // Work: the lower triangle's dots, n^2/2 of kb doubles each.
    const std::int64_t pairs = (n + 1) / 2;
    const double dots = 0.5 * static_cast<double>(n) * n * kb * sizeof(double);
    parallel_ranges(pairs, 4, threads, dots, [&](std::int64_t q0, std::int64_t q1) {
      for (std::int64_t q = q0; q < q1; ++q) add_row_pair(B.data(), kb, n, q, K);
    });
  }
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = i + 1; j < n; ++j) K[i * n + j] = K[j * n + i];
}

template <typename E>
void gram_cols_impl(const MatrixView& A, const std::int64_t* idx, std::int64_t k, double* G,
                    int threads) {
  const std::int64_t n = A.n;
  std::vector<double> C(static_cast<std::size_t>(k * n));  // gathered columns, k x n
  const double gathered = static_cast<double>(k) * n * A.element_bytes();
  parallel_ranges(k, 16, threads, gathered, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t t = b; t < e; ++t)
      for (std::int64_t i = 0; i < n; ++i) C[t * n + i] = load<E>(A, i, idx[t]);
  });
  const double dots = 0.5 * static_cast<double>(k) * k * n * sizeof(double);
  parallel_ranges(k, 8, threads, dots, [&](std::int64_t s0, std::int64_t s1) {
    for (std::int64_t s = s0; s < s1; ++s)
      for (std::int64_t t = 0; t <= s; ++t)
        G[s * k + t] = G[t * k + s] = dot(&C[s * n], &C[t * n], n);
  });
}

}  // namespace

void gram_rows(const MatrixView& A, const std::int64_t* idx, std::int64_t k, double* out,
               int threads) {
  with_element(A.dtype == DType::bf16,
               [&](auto e) { gram_rows_impl<decltype(e)>(A, idx, k, out, threads); });
}

void gram_cols(const MatrixView& A, const std::int64_t* idx, std::int64_t k, double* out,
               int threads) {
  with_element(A.dtype == DType::bf16,
               [&](auto e) { gram_cols_impl<decltype(e)>(A, idx, k, out, threads); });
}

}  // namespace chita::cpu
