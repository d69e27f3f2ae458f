// The L0-constrained ridge problem CHITA solves, as views into device memory.
//
//   minimise f(w) = 1/2 ||b - A w||^2 + lam/2 ||w - w_bar||^2 + alpha^T w,  ||w||_0 <= k
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "chita/matrix_view.h"

namespace chita {

struct Problem {
  MatrixView A;                    // n x p
  const float* b = nullptr;        // length n, device memory (float32)
  const float* w_bar = nullptr;    // length p, device memory
  const float* alpha = nullptr;    // length p or nullptr (no linear term)
  double lam = 0.0;
  std::int64_t k = 0;
};

struct SolveOptions {
  std::string method = "iht";      // "mp", "bso", "iht"
  int max_iter = 100;
  double tol = 1e-6;               // stop when (f_old - f_new) / max(|f_old|, 1e-30) < tol
  int threads = 0;                 // CPU threads; <= 0: the default (cpu/thread_count.h)
  const float* w0 = nullptr;       // optional warm start (length p, device memory)
  int power_iters = 30;            // for L = ||A||_2^2 + lam
  int max_doublings = 10;          // step doubling trials when the support changes
  double time_limit = 0.0;         // seconds; <= 0: none
  // ---- quality methods (greedy, swap, active, block, auto; docs/solvers.md) ----------
  double greedy_rate = -1.0;       // greedy: columns added per pass = rate * |S| (>= 1);
                                   // 0: one at a time (OMP order); < 0: auto picks
  int swap_rounds = 30;            // local search: rounds of swap moves (one pass each)
  std::int64_t swap_size = 0;      // local search: largest batch of swaps tried; 0: auto
  std::vector<std::int64_t> blocks;  // block: layer boundaries 0 < ... < p (empty: one layer)
  std::int64_t block_size = 0;     // block: weights per block inside a layer; 0: whole layer
};

struct SolveResult {
  std::vector<float> w;            // host, length p
  std::vector<std::int64_t> support;  // host, sorted ascending, size <= k
  double objective = 0.0;
  std::vector<double> history;     // objective after each iteration (first = start)
  int iterations = 0;
  double seconds = 0.0;
  std::string method;
  bool converged = false;
  // How each IHT step chose tau: counts of "opt" (exact, support kept), "chg" (a trial at
  // or beyond tau_chg), "lip" (1/L).
  int steps_opt = 0, steps_chg = 0, steps_lip = 0;
  // Why an iterative method stopped: "tol", "fixed_point", "support_stable", "max_iter",
  // "time_limit" (empty for direct methods).
  std::string stop_reason;
  double iteration_seconds = 0.0;  // time inside the iterations (no set-up, no backsolve)
};

// Runs options.method on the problem with the given backend. Throws InvalidArgument on
// bad input (checked before any work).
class Backend;
SolveResult solve(Backend& backend, const Problem& problem, const SolveOptions& options);

// Objective value f(w) for a k-sparse w given by its support and values (device memory).
double objective(Backend& backend, const Problem& problem, const std::int64_t* support,
                 const float* values, std::int64_t k);

}  // namespace chita
