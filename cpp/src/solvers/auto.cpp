// auto (the default): greedy selection, then swap local search from the greedy, the IHT
// and the magnitude supports, best kept. Every phase is bounded in passes over A
// (pass_budget, and max_iter per phase), the improvement phases by greedy's own work, and
// all by time_limit; never worse than the greedy support.
#include <algorithm>
#include <cmath>

#include "solvers/methods.h"  // solve_iht
#include "solvers/quality_methods.h"
#include "solvers/support_model.h"

namespace chita {
namespace {

// Columns added per pass when the caller left it to us: one at a time (exact OMP order)
// while k is small, then a geometric schedule (the pass budget sets a floor on it).
double auto_rate(std::int64_t k) { return k <= 512 ? 0.0 : (k <= 4096 ? 0.01 : 0.05); }

// The improvement phases together may cost this many times greedy's work: on MNIST
// gradients 2x buys 0.3-1% lower objectives than 1x (n = 512), 4x another 0.1%.
constexpr double kImproveShare = 2.0;

// Fraction of time_limit at which each phase stops starting new work.
constexpr double kGreedyShare = 0.5, kSwapShare = 0.7, kSecondShare = 0.9;

}  // namespace

int pass_budget(std::int64_t n, std::int64_t p) {
  // 1.5e10 streamed elements: ~15 s of single-thread CPU passes at p = 1e6, n = 128;
  // thousands of passes for MNIST-sized problems, where a pass costs milliseconds.
  const double passes = 1.5e10 / (static_cast<double>(n) * static_cast<double>(p));
  return static_cast<int>(std::clamp(passes, 24.0, 4000.0));
}

SolveResult solve_auto(Backend& be, const Problem& pb, const SolveOptions& opt) {
  Stopwatch clock;
  const double T = opt.time_limit;
  const auto until = [&](double share) { return T > 0 ? share * T : 0.0; };
  const auto late = [&](double share) { return T > 0 && clock.seconds() > share * T; };
  const int cap = std::max(1, opt.max_iter);  // max_iter: passes over A per phase
  int left = pass_budget(pb.A.n, pb.A.p);
  SupportModel model(be, pb, opt.threads);
  std::vector<double> history;
  // 1. Greedy from w0's support (or from nothing): at most half the pass budget.
  model.reset(warm_support(be, pb, opt.w0));
  history.push_back(model.value());
  const double rate = opt.greedy_rate >= 0 ? opt.greedy_rate : auto_rate(pb.k);
  const int greedy_passes = std::min(cap, std::max(1, left / 2));
  int iterations = greedy_grow(model, pb.k, rate, greedy_passes, clock, until(kGreedyShare), history);
  left -= iterations;
  // The improvement phases may cost kImproveShare x what greedy cost (a deterministic work
  // model in flops: a pass is n p, a rank-1 move ~4 n^2): at large n a swap round is
  // dominated by its O(m n^2) move evaluations, not by its pass over A.
  const double n = static_cast<double>(pb.A.n), np = n * static_cast<double>(pb.A.p);
  const double greedy_work = iterations * np + 4.0 * static_cast<double>(pb.k) * n * n;
  const double batch = static_cast<double>(opt.swap_size > 0 ? opt.swap_size
      : std::min<std::int64_t>(pb.k / 16, std::max<std::int64_t>(256, 2 * pb.A.n)));
  // A round: one pass (the gradient), the batch's rank-1 moves, ~16 n^2 for the closed-form
  // single swaps (triangular solves of the candidate columns) and O(k n) to rank the drops.
  const double round_work = np + (4.0 * batch + 16.0) * n * n + static_cast<double>(pb.k) * n;
  const int work_rounds =
      static_cast<int>(std::clamp(kImproveShare * greedy_work / round_work, 2.0, 1e6));
  const int iht_iters = static_cast<int>(std::clamp(greedy_work / (3.0 * np), 5.0, 50.0));
  // 2. Swap local search from the greedy support.
  const int rounds = swap_search(
      model, opt, std::min({opt.swap_rounds, cap, std::max(1, left / 2), (work_rounds + 1) / 2}),
      clock, until(kSwapShare), history);
  iterations += rounds, left -= rounds;
  auto best_support = model.support();
  double best_f = model.value();
  // 3. Other basins while budget remains: swap search from IHT's support, then from the
  // magnitude support (on gradients of trained networks often the best start of all).
  for (int start = 0; start < 2 && left >= 8 && !late(kSwapShare); ++start) {
    std::vector<std::int64_t> S;
    if (start == 0) {
      SolveOptions iht = opt;
      iht.method = "iht";
      iht.max_iter = std::min({cap, iht_iters, left / 2});
      if (T > 0) iht.time_limit = std::max(1e-3, kSwapShare * T - clock.seconds());
      SolveResult r = solve_iht(be, pb, iht);
      iterations += r.iterations, left -= 2 * r.iterations;  // ~2 passes per IHT iteration
      S = std::move(r.support);
    } else {
      S = fill_by_magnitude(model.w_bar(), {}, pb.k);
    }
    model.reset(S);
    std::vector<double> trail;
    const int rounds_cap =
        std::min({opt.swap_rounds, cap, std::max(1, left), std::max(1, work_rounds / 2)});
    const int r = swap_search(model, opt, rounds_cap, clock, until(kSecondShare), trail);
    iterations += r, left -= r;
    if (model.value() < best_f) {
      best_f = model.value(), best_support = model.support();
      history.push_back(best_f);
    }
  }
  if (model.support() != best_support) model.reset(best_support);
  return model_result(be, pb, model, "auto", std::move(history), iterations, !late(1.0), clock);
}

}  // namespace chita
