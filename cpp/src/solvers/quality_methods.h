// The quality methods of solve(): greedy selection, swap local search, active-set IHT,
// block-diagonal solving and the default that combines them (docs/solvers.md).
#pragma once
#include <cstdint>
#include <vector>

#include "chita/backend.h"
#include "chita/problem.h"
#include "solvers/common.h"  // Stopwatch

namespace chita {

class SupportModel;

SolveResult solve_greedy(Backend& be, const Problem& pb, const SolveOptions& opt);
SolveResult solve_swap(Backend& be, const Problem& pb, const SolveOptions& opt);
SolveResult solve_active(Backend& be, const Problem& pb, const SolveOptions& opt);
SolveResult solve_block(Backend& be, const Problem& pb, const SolveOptions& opt);
SolveResult solve_auto(Backend& be, const Problem& pb, const SolveOptions& opt);

// Grows the model's support to k columns by greedy selection: each pass over A takes a
// pool of the largest |gradient| entries off the support and adds columns from it in
// OMP order (largest |g| first, g refreshed on the pool after every sub-batch). rate = 0
// adds one column per pass: exactly orthogonal matching pursuit. Appends the objective
// after each pass to history; returns the passes made. max_passes > 0 bounds the passes
// over A (each pass then adds at least (k - |S|) / max_passes columns); past time_limit
// the rest is filled in one batch.
int greedy_grow(SupportModel& model, std::int64_t k, double rate, int max_passes,
                const Stopwatch& clock, double time_limit, std::vector<double>& history);

// Swap local search on a full support: per round one gradient pass, then batches of
// swaps (drop the smallest |w_i|, add the largest |g_j|) from swap_size down to single
// swaps, each evaluated exactly in closed form; the first improving one is applied.
// Stops when a round finds none, after max_rounds rounds (one pass over A each) or past
// time_limit. Returns rounds run.
int swap_search(SupportModel& model, const SolveOptions& opt, int max_rounds,
                const Stopwatch& clock, double time_limit, std::vector<double>& history);

// S completed to k columns by the largest |w_bar_j| not in S (ties: smaller j first).
std::vector<std::int64_t> fill_by_magnitude(const std::vector<float>& w_bar,
                                            std::vector<std::int64_t> S, std::int64_t k);

// Passes over A that auto (and the greedy default rate) may spend on an n x p problem:
// a fixed budget of streamed elements, so the total work stays ~constant as A grows.
int pass_budget(std::int64_t n, std::int64_t p);

// Support of w0 (its top-k non-zeros) or empty when w0 is null.
std::vector<std::int64_t> warm_support(Backend& be, const Problem& pb, const float* w0);
// Result from a host sparse solution, its objective evaluated exactly.
SolveResult make_result(Backend& be, const Problem& pb, const std::vector<std::int64_t>& idx,
                        const std::vector<float>& val, const char* method);
// The model's exact solution (backsolve on its support) as a finished SolveResult.
SolveResult model_result(Backend& be, const Problem& pb, SupportModel& model, const char* method,
                         std::vector<double> history, int iterations, bool converged,
                         const Stopwatch& clock);

}  // namespace chita
