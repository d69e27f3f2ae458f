// The IHT gradient and its product on the support in one pass over A. Unfused, an IHT
// iteration reads A once for g = -A^T r + ... and then the support's columns a second time
// for A_S g_S, gathered at a few GB/s; here each block of columns is multiplied with r and,
// while still in L2, its support columns are added into A_S g_S.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "chita/errors.h"
#include "cpu/column_ranges.h"
#include "cpu/kernels.h"
#include "cpu/parallel.h"

namespace chita::cpu {
namespace {

constexpr std::int64_t kMaxChunks = 256;        // bounds the partial sums at 256 n doubles
constexpr std::int64_t kMinChunkColumns = 4096;
constexpr std::int64_t kBlockBytes = 256 << 10;  // columns re-read from L2, not memory

// g[j] for j in [begin, end) from g[j] = (A^T r)[j], in the order of the unfused vector ops.
void gradient_epilogue(const GradientTerms& terms, std::int64_t begin, std::int64_t end,
                       float* g) {
  const float lam = terms.lam;
#pragma omp simd
  for (std::int64_t j = begin; j < end; ++j) g[j] = -1.0f * g[j] + lam * terms.w[j];
  if (terms.lam > 0 && terms.w_bar) {
#pragma omp simd
    for (std::int64_t j = begin; j < end; ++j) g[j] = 1.0f * g[j] + (-lam) * terms.w_bar[j];
  }
  if (terms.alpha) {
#pragma omp simd
    for (std::int64_t j = begin; j < end; ++j) g[j] = 1.0f * g[j] + 1.0f * terms.alpha[j];
  }
}

}  // namespace

void gradient_on_support(const MatrixView& A, const float* r, const GradientTerms& terms,
                         const std::int64_t* idx, std::int64_t k, float* g, float* g_s,
                         double* a_g_s, int threads) {
  CHITA_ASSERT(A.layout == Layout::col_major);
  const std::int64_t n = A.n, p = A.p;
  // Chunks depend on p only, and their partial sums are added in order: the result does
  // not depend on the thread count.
  const PreparedResidual prepared(A, r);
  const std::int64_t chunk = std::max(kMinChunkColumns, (p + kMaxChunks - 1) / kMaxChunks);
  const std::int64_t chunks = (p + chunk - 1) / chunk;
  const std::int64_t block = std::max<std::int64_t>(1, kBlockBytes / (n * A.element_bytes()));
  std::vector<double> partial(static_cast<std::size_t>(chunks * n), 0.0);
  const double bytes = static_cast<double>(p) * n * A.element_bytes();
  parallel_ranges(chunks, 1, threads, bytes, [&](std::int64_t c, std::int64_t) {
    const std::int64_t begin = c * chunk, end = std::min(p, begin + chunk);
    std::int64_t t = std::lower_bound(idx, idx + k, begin) - idx;
    for (std::int64_t b = begin; b < end; b += block) {
      const std::int64_t e = std::min(end, b + block);
      atr_columns(A, prepared, nullptr, b, e, g);
      gradient_epilogue(terms, b, e, g);
      const std::int64_t t0 = t;
      for (; t < k && idx[t] < e; ++t) g_s[t] = g[idx[t]];
      add_scaled_columns(A, idx, g_s, t0, t, &partial[c * n]);
    }
  });
  sum_partials_in_order(partial, chunks, n, a_g_s);
}

}  // namespace chita::cpu
