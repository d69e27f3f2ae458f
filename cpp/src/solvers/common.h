// Pieces every solver shares: sparse iterates, the objective, the backsolve.
#pragma once
#include <chrono>
#include <cstdint>

#include "chita/backend.h"
#include "chita/problem.h"

namespace chita {

// A k-sparse vector on the device: sorted indices and their values.
struct SparseIterate {
  Buffer<std::int64_t> idx;
  Buffer<float> val;
  std::int64_t k = 0;

  SparseIterate(Backend& be, std::int64_t k_)
      : idx(be.alloc_i64(k_)), val(be.alloc_f32(k_)), k(k_) {}
};

// Per-solve quantities computed once: b in float64, ||w_bar||^2, scratch space.
class ObjectiveEvaluator {
 public:
  ObjectiveEvaluator(Backend& be, const Problem& pb);

  // r = b - A_S x (device, length n) and returns f(w) for w = (S, x), exactly as
  // 1/2||r||^2 + lam/2 (||w_bar||^2 - ||w_bar_S||^2 + ||x - w_bar_S||^2) + alpha_S^T x.
  double evaluate(const std::int64_t* S, const float* x, std::int64_t k, double* r);
  // Same, with r already equal to b - A_S x.
  double from_residual(const std::int64_t* S, const float* x, std::int64_t k, const double* r);

  const double* b64() const { return b64_.data(); }

 private:
  Backend& be_;
  const Problem& pb_;
  Buffer<double> b64_;
  Buffer<float> scratch_;  // length k: gathered w_bar_S or alpha_S
  double wbar_sq_ = 0.0;
};

// Exact ridge solution on support S (the backsolve): fills x (device, length k).
// Uses a k x k system when k <= n, else Woodbury with one n x n Cholesky.
void backsolve(Backend& be, const Problem& pb, const std::int64_t* S, std::int64_t k,
               float* x, int threads);

// Copies a sparse iterate to the host result (w dense, support, objective).
void finish_result(Backend& be, const Problem& pb, const SparseIterate& it, double objective,
                   SolveResult& out);

class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

// SparseIterate holding the top-k of `dense` (device, length p) and those values.
void top_k_of(Backend& be, const float* dense, std::int64_t p, SparseIterate& it);

}  // namespace chita
