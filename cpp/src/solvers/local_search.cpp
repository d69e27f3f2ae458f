// swap: local combinatorial search on a support of size k (from w0, else magnitude).
// Every move is evaluated exactly in closed form by rank-1 updates of the n x n factor.
#include <algorithm>
#include <cmath>

#include "solvers/quality_methods.h"
#include "solvers/support_model.h"

namespace chita {
namespace {

// The support's entries ordered by |w_i| ascending (cheapest drops first).
std::vector<std::int64_t> drop_order(SupportModel& model) {
  std::vector<std::int64_t> idx;
  std::vector<float> val;
  // Large supports: the n-space estimate (O(k n)) instead of the backsolve (O(k n^2)).
  const auto& pb = model.problem();
  if (pb.lam > 0 && static_cast<std::int64_t>(model.support().size()) > 4 * pb.A.n)
    model.estimate(idx, val);
  else
    model.solution(idx, val);
  std::vector<std::int64_t> order(idx.size());
  for (std::size_t t = 0; t < order.size(); ++t) order[t] = static_cast<std::int64_t>(t);
  std::stable_sort(order.begin(), order.end(),
                   [&](auto a, auto b) { return std::fabs(val[a]) < std::fabs(val[b]); });
  for (auto& t : order) t = idx[t];
  return order;
}

// Off-support coordinates by |g_j| descending (best additions first), at most m.
std::vector<std::int64_t> add_order(SupportModel& model, Buffer<float>& g, std::int64_t m) {
  Backend& be = model.backend();
  const std::int64_t p = model.problem().A.p;
  const std::int64_t s = static_cast<std::int64_t>(model.support().size());
  model.gradient(g.data());
  const std::int64_t c = std::min(p, s + m);
  auto idx = be.alloc_i64(c);
  auto gv = be.alloc_f32(c);
  be.topk_abs(g.data(), p, c, idx.data());
  be.gather(g.data(), idx.data(), c, gv.data());
  std::vector<std::int64_t> cand(static_cast<std::size_t>(c));
  std::vector<float> gh(static_cast<std::size_t>(c));
  be.to_host(cand.data(), idx.data(), c * 8);
  be.to_host(gh.data(), gv.data(), c * 4);
  std::vector<std::int64_t> order;
  for (std::int64_t t = 0; t < c; ++t)
    if (!model.in_support(cand[t]) && gh[t] != 0.0f) order.push_back(t);
  std::stable_sort(order.begin(), order.end(),
                   [&](auto a, auto b) { return std::fabs(gh[a]) > std::fabs(gh[b]); });
  if (static_cast<std::int64_t>(order.size()) > m) order.resize(static_cast<std::size_t>(m));
  for (auto& t : order) t = cand[t];
  return order;
}

}  // namespace

int swap_search(SupportModel& model, const SolveOptions& opt, int max_rounds,
                const Stopwatch& clock, double time_limit, std::vector<double>& history) {
  const std::int64_t k = static_cast<std::int64_t>(model.support().size());
  if (k == 0) return 0;
  // Batches up to k/16 swaps, at most max(256, 2n): a batch of m costs O(m n^2 + n^3).
  const std::int64_t cap = std::max<std::int64_t>(256, 2 * model.problem().A.n);
  const std::int64_t m0 = opt.swap_size > 0 ? std::min(opt.swap_size, k)
                                            : std::max<std::int64_t>(1, std::min<std::int64_t>(k / 16, cap));
  constexpr int kPairs = 8;  // single swaps: the kPairs x kPairs best pairs are tried
  auto g = model.backend().alloc_f32(model.problem().A.p);
  int rounds = 0;
  for (; rounds < max_rounds; ++rounds) {
    if (time_limit > 0 && clock.seconds() > time_limit) break;
    const double f = model.value();
    const double min_gain = std::max(std::fabs(f), 1e-300) * 1e-12;
    const auto adds = add_order(model, g, std::max<std::int64_t>(m0, kPairs));
    if (adds.empty()) break;
    const auto drops = drop_order(model);
    bool moved = false;
    for (std::int64_t m = std::min<std::int64_t>(m0, adds.size()); m >= 2 && !moved; m /= 2) {
      std::vector<std::int64_t> D(drops.begin(), drops.begin() + m), C(adds.begin(), adds.begin() + m);
      if (model.value_after_swap(D, C) < f - min_gain) model.swap(D, C), moved = true;
    }
    double best = f - min_gain;
    std::int64_t bi = -1, bj = -1;
    for (int a = 0; a < kPairs && !moved && a < static_cast<int>(adds.size()); ++a)
      for (int d = 0; d < kPairs && d < static_cast<int>(drops.size()); ++d) {
        const double v = model.value_after_swap({drops[d]}, {adds[a]});
        if (v < best) best = v, bi = drops[d], bj = adds[a];
      }
    if (!moved && bi >= 0) model.swap({bi}, {bj}), moved = true;
    if (!moved) break;
    history.push_back(model.value());
  }
  return rounds;
}

SolveResult solve_swap(Backend& be, const Problem& pb, const SolveOptions& opt) {
  Stopwatch clock;
  SupportModel model(be, pb, opt.threads);
  auto S = warm_support(be, pb, opt.w0);
  std::vector<double> history;
  model.reset(S);
  if (static_cast<std::int64_t>(S.size()) < pb.k) {  // no (or a short) warm start: magnitude
    std::vector<float> w(model.w_bar());
    for (auto j : S) w[j] = 0.0f;  // keep w0's support, fill by |w_bar|
    std::vector<std::int64_t> rest;
    for (std::int64_t j = 0; j < pb.A.p; ++j)
      if (!model.in_support(j)) rest.push_back(j);
    const std::int64_t need = pb.k - static_cast<std::int64_t>(S.size());
    std::nth_element(rest.begin(), rest.begin() + need - 1, rest.end(), [&](auto a, auto b) {
      return std::fabs(w[a]) > std::fabs(w[b]) || (std::fabs(w[a]) == std::fabs(w[b]) && a < b);
    });
    S.insert(S.end(), rest.begin(), rest.begin() + need);
    model.reset(S);
  }
  history.push_back(model.value());
  const int rounds = swap_search(model, opt, opt.swap_rounds, clock, opt.time_limit, history);
  return model_result(be, pb, model, "swap", std::move(history), rounds,
                      rounds < opt.swap_rounds, clock);
}

}  // namespace chita
