// The ridge fit on a support S, kept in the n-dimensional residual space (n << p).
//
// On a fixed S the optimum of f is a ridge solution; by Woodbury everything is n x n:
//   P = lam I + A_S A_S^T,  y = lam r0 + z,  r0 = b - A_S w_bar_S,  z = A_S alpha_S,
//   e = P^{-1} y  (the residual b - A w* at the optimum),
//   w*_S = w_bar_S + (A_S^T e - alpha_S) / lam,
//   f(S) = 1/2 e^T r0 + (e^T z - ||alpha_S||^2) / (2 lam) + alpha_S^T w_bar_S
//          + lam/2 ||w_bar outside S||^2.
// Adding or dropping a column is a rank-1 update of the Cholesky factor of P (O(n^2)),
// so greedy selection and swap moves never form a p x p or k x k matrix.
#pragma once
#include <cstdint>
#include <vector>

#include "chita/backend.h"
#include "chita/problem.h"

namespace chita {

class SupportModel {
 public:
  SupportModel(Backend& be, const Problem& pb, int threads);

  // Starts over from support S (any order, no duplicates): one gram_rows over S.
  void reset(const std::vector<std::int64_t>& S);
  // Adds columns (not in S): rank-1 updates.
  void add(const std::vector<std::int64_t>& cols);
  // f at the optimum on S - drop + add, without changing the model (O(m n^2)).
  double value_after_swap(const std::vector<std::int64_t>& drop,
                          const std::vector<std::int64_t>& add) const;
  void swap(const std::vector<std::int64_t>& drop, const std::vector<std::int64_t>& add);
  // f after each single swap (drop[d] out, add[a] in), all pairs, row-major |drop| x |add|,
  // in closed form: one triangular solve per column (O(n^2)) and one dot per pair (O(n)),
  // by Woodbury on the rank-2 change of P. +inf where a pair is numerically unsafe.
  std::vector<double> pair_values(const std::vector<std::int64_t>& drop,
                                  const std::vector<std::int64_t>& add) const;

  double value() const { return f_; }
  const std::vector<double>& residual() const { return e_; }  // b - A w* (host)
  const std::vector<std::int64_t>& support() const { return S_; }  // insertion order
  bool in_support(std::int64_t j) const { return in_S_[static_cast<std::size_t>(j)] != 0; }
  const std::vector<float>& w_bar() const { return wbar_; }  // host copies
  const std::vector<float>& alpha() const { return alpha_; }
  double lam_eff() const { return lam_; }

  // Full gradient at w* (device, length p): g = -A^T e - lam w_bar + alpha off S, 0 on S.
  void gradient(float* g_dev);
  // Sorted support and the optimal values on it (host): the exact backsolve.
  void solution(std::vector<std::int64_t>& idx, std::vector<float>& val);
  // Sorted support and w*_S = w_bar_S + (A_S^T e - alpha_S) / lam from the n-space model:
  // one atr_subset over S (O(k n)) instead of a backsolve (O(k n^2)). Accurate enough to
  // rank weights; needs the problem's lam > 0.
  void estimate(std::vector<std::int64_t>& idx, std::vector<float>& val);

  Backend& backend() const { return be_; }
  const Problem& problem() const { return pb_; }

 private:
  // Sorts the support into idx (host; val zero-filled to match) and uploads it.
  Buffer<std::int64_t> sorted_support(std::vector<std::int64_t>& idx, std::vector<float>& val);
  struct State {  // everything a swap changes
    std::vector<double> L;  // Cholesky factor of P, column-major lower (L[c * n + r])
    std::vector<double> r0, z;
    double alpha_sq = 0, alpha_wbar = 0, wbar_out_sq = 0;
  };
  void fetch_columns(const std::vector<std::int64_t>& cols, std::vector<double>& out) const;
  void apply(State& s, const std::vector<std::int64_t>& cols, const std::vector<double>& C,
             double sign) const;
  double evaluate(const State& s, std::vector<double>* e_out) const;
  void refactor(State& s, const std::vector<std::int64_t>& S) const;
  // P <- L L^T + A_add A_add^T - A_drop A_drop^T and refactor: O((|add| + |drop|) n^2 + n^3),
  // independent of |S|. For batches too big for rank-1 updates.
  void apply_batch(State& s, const std::vector<std::int64_t>& add,
                   const std::vector<std::int64_t>& drop) const;
  // Moves r0, z and the scalars for the columns `cols` entering (sign +1) or leaving (-1).
  void shift_terms(State& s, const std::vector<std::int64_t>& cols, double sign) const;
  void factor(State& s, std::vector<double>& P) const;  // P (row-major, + lam I) -> s.L

  Backend& be_;
  const Problem& pb_;
  int threads_;
  std::int64_t n_, p_;
  double lam_;
  std::vector<float> wbar_, alpha_;
  std::vector<double> b_;
  double wbar_sq_ = 0;
  State st_;
  // What-if copy for value_after_swap: reused so that trying a move never allocates (an
  // n x n factor is 8 MB at n = 1000; fresh pages cost more than the update itself).
  mutable State trial_;
  std::vector<std::int64_t> S_;
  std::vector<std::uint8_t> in_S_;
  std::vector<double> e_;
  double f_ = 0;
  int batches_ = 0;  // batch updates since the last full refactor (bounds drift)
  Buffer<std::int64_t> idx_dev_;
  Buffer<float> one_dev_, e32_dev_;
  Buffer<double> col_dev_;
};

// Whether adding `add` and dropping `drop` columns on a support of `k` is cheaper as one
// batch update (gram of the moved columns + an n x n refactor) than as rank-1 updates.
bool batch_is_cheaper(std::int64_t moved, std::int64_t n);

// Cholesky rank-1 update (sign +1) or downdate (sign -1) of a column-major lower factor,
// L L^T + sign x x^T, in O(n^2). x is overwritten. Returns false if a downdate would lose
// positive definiteness.
bool chol_rank1(std::vector<double>& L, std::int64_t n, std::vector<double>& x, double sign);
// Solves L x = rhs in place (forward substitution) for a column-major lower factor.
void chol_forward_colmajor(const std::vector<double>& L, std::int64_t n, double* x);
// Solves L L^T x = rhs in place for a column-major lower factor.
void chol_solve_colmajor(const std::vector<double>& L, std::int64_t n, std::vector<double>& x);

}  // namespace chita
