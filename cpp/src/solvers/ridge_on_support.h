// The ridge problem restricted to one fixed support S, prepared once and solved for any lam.
//
// Everything that does not depend on lam is computed in the constructor: w_bar_S, the
// residual r0 = b - A_S w_bar_S, the Gram matrix (A_S^T A_S when k <= n, A_S A_S^T for
// Woodbury when k > n) and the right-hand-side pieces. Each solve(lam) then costs one
// Cholesky of that matrix plus one product with A_S: a lam search on a fixed support costs
// about one backsolve, not one per lam.
#pragma once
#include <cstdint>
#include <vector>

#include "chita/backend.h"
#include "chita/problem.h"

namespace chita {

class RidgeOnSupport {
 public:
  // S: device indices (sorted, length k), copied. pb.lam is not used.
  RidgeOnSupport(Backend& be, const Problem& pb, const std::int64_t* S, std::int64_t k,
                 int threads);

  // x (device, length k) = argmin over w supported on S of f(w) with this lam.
  void solve(double lam, float* x);

  const std::int64_t* support() const { return idx_.data(); }
  std::int64_t k() const { return k_; }

 private:
  Backend& be_;
  const Problem& pb_;
  const std::int64_t n_, k_;
  const int threads_;
  const bool woodbury_;          // k > n: solve in the n-dimensional row space
  Buffer<std::int64_t> idx_;
  Buffer<float> f32_scratch_;    // length max(n, k): float32 vectors streamed against A
  Buffer<float> c_dev_;          // length k: A_S^T y
  std::vector<double> gram_;     // k x k or n x n, row-major, without the lam I term
  std::vector<double> rhs0_;     // k <= n: A_S^T r0; Woodbury: r0
  std::vector<double> z_;        // Woodbury with alpha: A_S alpha_S (length n)
  std::vector<double> alpha_s_;  // alpha_S (length k), empty without alpha
  std::vector<float> wbar_s_;    // w_bar_S on the host (length k)
};

}  // namespace chita
