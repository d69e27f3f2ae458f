// auto (the default): greedy selection, then swap local search from the best of the
// greedy, IHT and magnitude supports. Honours time_limit; never worse than any of them.
#include <algorithm>
#include <cmath>

#include "solvers/methods.h"  // solve_iht
#include "solvers/quality_methods.h"
#include "solvers/support_model.h"

namespace chita {
namespace {

// Columns added per pass when the caller left it to us: one at a time (exact OMP order)
// while that costs at most ~512 passes over A, then a geometric schedule.
double auto_rate(std::int64_t k) { return k <= 512 ? 0.0 : (k <= 4096 ? 0.01 : 0.05); }

}  // namespace

SolveResult solve_auto(Backend& be, const Problem& pb, const SolveOptions& opt) {
  Stopwatch clock;
  SupportModel model(be, pb, opt.threads);
  std::vector<double> history;
  // 1. Greedy from w0's support (or from nothing).
  model.reset(warm_support(be, pb, opt.w0));
  history.push_back(model.value());
  const double rate = opt.greedy_rate >= 0 ? opt.greedy_rate : auto_rate(pb.k);
  int iterations = greedy_grow(model, pb.k, rate, clock, opt.time_limit * 0.6, history);
  // 2. Swap local search from the greedy support, then from IHT's (a different basin).
  iterations += swap_search(model, opt, clock, history);
  auto best_support = model.support();
  double best_f = model.value();
  if (!(opt.time_limit > 0 && clock.seconds() > opt.time_limit * 0.7)) {
    SolveOptions iht = opt;
    iht.method = "iht";
    iht.max_iter = std::min(opt.max_iter, 50);
    if (opt.time_limit > 0) iht.time_limit = std::max(1e-3, 0.7 * opt.time_limit - clock.seconds());
    SolveResult r = solve_iht(be, pb, iht);
    iterations += r.iterations;
    model.reset(r.support);
    std::vector<double> trail;
    iterations += swap_search(model, opt, clock, trail);
    if (model.value() < best_f) {
      best_f = model.value(), best_support = model.support();
      history.push_back(best_f);
    }
  }
  if (model.support() != best_support) model.reset(best_support);
  std::vector<std::int64_t> idx;
  std::vector<float> val;
  model.solution(idx, val);
  SolveResult res = make_result(be, pb, idx, val, "auto");
  res.history = std::move(history);
  res.iterations = iterations;
  res.converged = !(opt.time_limit > 0 && clock.seconds() > opt.time_limit);
  res.seconds = clock.seconds();
  return res;
}

}  // namespace chita
