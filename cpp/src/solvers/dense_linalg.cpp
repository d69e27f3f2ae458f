#include "solvers/dense_linalg.h"

#include <cmath>

#include "chita/errors.h"  // InvalidArgument
#include "cpu/parallel.h"  // parallel_ranges, resolve_threads
#include "host_blas.h"

namespace chita {

bool cholesky(std::vector<double>& a, std::int64_t m, int threads) {
  threads = cpu::resolve_threads(threads);
  // Row-oriented (left-looking) Cholesky: every update is a contiguous dot product. Each
  // column's rows are updated in parallel; the work rule keeps the early columns (short
  // dots) and small matrices on one thread.
  for (std::int64_t j = 0; j < m; ++j) {
    double* Lj = &a[j * m];
    const double d = Lj[j] - blas::dot(Lj, Lj, j);
    if (!(d > 0.0) || !std::isfinite(d)) return false;
    const double ljj = std::sqrt(d);
    Lj[j] = ljj;
    const double bytes = static_cast<double>(m - j - 1) * j * sizeof(double);
    cpu::parallel_ranges(m - j - 1, 32, threads, bytes, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = j + 1 + b; i < j + 1 + e; ++i) {
        double* Li = &a[i * m];
        Li[j] = (Li[j] - blas::dot(Li, Lj, j)) / ljj;
      }
    });
  }
  return true;
}

void cholesky_solve(const std::vector<double>& L, std::int64_t m, std::vector<double>& x) {
  for (std::int64_t i = 0; i < m; ++i)  // L y = rhs: row i of L against y
    x[i] = (x[i] - blas::dot(&L[i * m], x.data(), i)) / L[i * m + i];
  for (std::int64_t i = m - 1; i >= 0; --i) {  // L^T x = y: row i of L scattered upwards
    x[i] /= L[i * m + i];
    blas::axpy(-x[i], &L[i * m], x.data(), i);
  }
}

double cholesky_with_jitter(std::vector<double>& a, std::int64_t m, int threads) {
  double trace = 0.0;
  for (std::int64_t i = 0; i < m; ++i) trace += a[i * m + i];
  const double scale = trace > 0 ? trace / static_cast<double>(m) : 1.0;
  const std::vector<double> original = a;
  double jitter = 0.0;
  for (int attempt = 0; attempt < 12; ++attempt) {
    if (cholesky(a, m, threads)) return jitter;
    jitter = jitter == 0.0 ? 1e-12 * scale : jitter * 10.0;
    a = original;
    for (std::int64_t i = 0; i < m; ++i) a[i * m + i] += jitter;
  }
  // Not an invariant: NaN/Inf in A (with check_finite=False) or lam = 0 on a rank-deficient
  // support lead here, so it is the caller's error and says what to change.
  throw InvalidArgument(
      "the backsolve system (Gram matrix of A on the support + lam I) could not be factored "
      "even with jitter: A most likely holds NaN or Inf (run with check_finite=True to find "
      "them), or lam = 0 with a rank-deficient support (pass lam > 0)");
}

}  // namespace chita
