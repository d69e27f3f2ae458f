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
// after each pass to history; returns the passes made.
int greedy_grow(SupportModel& model, std::int64_t k, double rate, const Stopwatch& clock,
                double time_limit, std::vector<double>& history);

// Swap local search on a full support: per round one gradient pass, then batches of
// swaps (drop the smallest |w_i|, add the largest |g_j|) from swap_size down to single
// swaps, each evaluated exactly in closed form; the first improving one is applied.
// Stops when a round finds none. Returns rounds run.
int swap_search(SupportModel& model, const SolveOptions& opt, const Stopwatch& clock,
                std::vector<double>& history);

// Support of w0 (its top-k non-zeros) or empty when w0 is null.
std::vector<std::int64_t> warm_support(Backend& be, const Problem& pb, const float* w0);
// Result from a host sparse solution, its objective evaluated exactly.
SolveResult make_result(Backend& be, const Problem& pb, const std::vector<std::int64_t>& idx,
                        const std::vector<float>& val, const char* method);

}  // namespace chita
