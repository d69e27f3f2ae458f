// swap: local combinatorial search on a support of size k (from w0, else magnitude).
// Every move is evaluated exactly in closed form in the n-space: single swaps by Woodbury on
// the rank-2 change (O(n) per pair), batches by updates of the n x n factor.
#include <algorithm>
#include <cmath>

#include "solvers/quality_methods.h"
#include "solvers/support_model.h"

namespace chita {
namespace {

// Supports up to this size rank their drops by the exact backsolve; larger ones by the
// n-space estimate (O(k n) instead of O(k n^2) per round).
constexpr std::int64_t kExactDropsUpTo = 64;

// The support's entries ordered by |w_i| ascending (cheapest drops first).
std::vector<std::int64_t> drop_order(SupportModel& model) {
  std::vector<std::int64_t> idx;
  std::vector<float> val;
  const auto& pb = model.problem();
  if (pb.lam > 0 && static_cast<std::int64_t>(model.support().size()) > kExactDropsUpTo)
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
    if (!moved) {  // single swaps: all pairs of the kPairs best drops and adds, closed form
      const auto nd = std::min<std::size_t>(kPairs, drops.size());
      const auto na = std::min<std::size_t>(kPairs, adds.size());
      const std::vector<std::int64_t> D(drops.begin(), drops.begin() + nd);
      const std::vector<std::int64_t> C(adds.begin(), adds.begin() + na);
      const auto values = model.pair_values(D, C);
      const auto best = std::min_element(values.begin(), values.end()) - values.begin();
      const std::int64_t bi = D[best / C.size()], bj = C[best % C.size()];
      // Confirmed on the factor itself before it is applied (rounding must not fool us).
      if (values[best] < f - min_gain && model.value_after_swap({bi}, {bj}) < f - min_gain)
        model.swap({bi}, {bj}), moved = true;
    }
    if (!moved) break;
    history.push_back(model.value());
  }
  return rounds;
}

std::vector<std::int64_t> fill_by_magnitude(const std::vector<float>& w_bar,
                                            std::vector<std::int64_t> S, std::int64_t k) {
  std::vector<std::uint8_t> taken(w_bar.size(), 0);
  for (auto j : S) taken[j] = 1;
  std::vector<std::int64_t> rest;
  for (std::int64_t j = 0; j < static_cast<std::int64_t>(w_bar.size()); ++j)
    if (!taken[j]) rest.push_back(j);
  const std::int64_t need = std::min<std::int64_t>(k - static_cast<std::int64_t>(S.size()),
                                                   static_cast<std::int64_t>(rest.size()));
  if (need <= 0) return S;
  std::nth_element(rest.begin(), rest.begin() + need - 1, rest.end(), [&](auto a, auto b) {
    const float fa = std::fabs(w_bar[a]), fb = std::fabs(w_bar[b]);
    return fa > fb || (fa == fb && a < b);
  });
  S.insert(S.end(), rest.begin(), rest.begin() + need);
  return S;
}

SolveResult solve_swap(Backend& be, const Problem& pb, const SolveOptions& opt) {
  Stopwatch clock;
  SupportModel model(be, pb, opt.threads);
  auto S = warm_support(be, pb, opt.w0);
  std::vector<double> history;
  model.reset(S);
  if (static_cast<std::int64_t>(S.size()) < pb.k) {  // no (or a short) warm start: magnitude
    S = fill_by_magnitude(model.w_bar(), std::move(S), pb.k);
    model.reset(S);
  }
  history.push_back(model.value());
  const int rounds = swap_search(model, opt, opt.swap_rounds, clock, opt.time_limit, history);
  return model_result(be, pb, model, "swap", std::move(history), rounds,
                      rounds < opt.swap_rounds, clock);
}

}  // namespace chita
