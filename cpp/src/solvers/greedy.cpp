// greedy: forward selection in OMP order, with the fit kept in the n-dim residual space.
#include <algorithm>
#include <cmath>

#include "solvers/quality_methods.h"
#include "solvers/support_model.h"

namespace chita {

std::vector<std::int64_t> warm_support(Backend& be, const Problem& pb, const float* w0) {
  if (!w0) return {};
  const std::int64_t p = pb.A.p;
  std::vector<float> w(static_cast<std::size_t>(p));
  be.to_host(w.data(), w0, p * 4);
  std::vector<std::int64_t> S;
  for (std::int64_t j = 0; j < p; ++j)
    if (w[j] != 0.0f) S.push_back(j);
  if (static_cast<std::int64_t>(S.size()) > pb.k) {
    std::nth_element(S.begin(), S.begin() + pb.k, S.end(), [&](auto a, auto b) {
      return std::fabs(w[a]) > std::fabs(w[b]) || (std::fabs(w[a]) == std::fabs(w[b]) && a < b);
    });
    S.resize(static_cast<std::size_t>(pb.k));
  }
  std::sort(S.begin(), S.end());
  return S;
}

SolveResult make_result(Backend& be, const Problem& pb, const std::vector<std::int64_t>& idx,
                        const std::vector<float>& val, const char* method) {
  SolveResult res;
  const std::int64_t k = static_cast<std::int64_t>(idx.size());
  res.w.assign(static_cast<std::size_t>(pb.A.p), 0.0f);
  for (std::int64_t t = 0; t < k; ++t) res.w[idx[t]] = val[t];
  res.support = idx;
  if (k > 0) {
    auto idx_dev = be.alloc_i64(k);
    auto val_dev = be.alloc_f32(k);
    be.to_device(idx_dev.data(), idx.data(), k * 8);
    be.to_device(val_dev.data(), val.data(), k * 4);
    res.objective = objective(be, pb, idx_dev.data(), val_dev.data(), k);
  } else {
    auto zero = be.alloc_f32(pb.A.p);
    be.fill(zero.data(), pb.A.p, 0.0f);
    auto all = be.alloc_i64(1);
    const std::int64_t j0 = 0;
    be.to_device(all.data(), &j0, 8);
    res.objective = objective(be, pb, all.data(), zero.data(), 1);
  }
  res.method = method;
  return res;
}

SolveResult model_result(Backend& be, const Problem& pb, SupportModel& model, const char* method,
                         std::vector<double> history, int iterations, bool converged,
                         const Stopwatch& clock) {
  std::vector<std::int64_t> idx;
  std::vector<float> val;
  model.solution(idx, val);
  SolveResult res = make_result(be, pb, idx, val, method);
  res.history = std::move(history);
  res.iterations = iterations;
  res.converged = converged;
  res.seconds = clock.seconds();
  return res;
}

int greedy_grow(SupportModel& model, std::int64_t k, double rate, int max_passes,
                const Stopwatch& clock, double time_limit, std::vector<double>& history) {
  Backend& be = model.backend();
  const Problem& pb = model.problem();
  const std::int64_t p = pb.A.p, n = pb.A.n;
  auto g = be.alloc_f32(p);
  int passes = 0;
  // A pass budget sets the smallest batch: (k - |S0|) / max_passes columns per pass.
  const std::int64_t s0 = static_cast<std::int64_t>(model.support().size());
  const std::int64_t m_min = max_passes > 0 ? (k - s0 + max_passes - 1) / max_passes : 1;
  while (static_cast<std::int64_t>(model.support().size()) < k) {
    const std::int64_t s = static_cast<std::int64_t>(model.support().size());
    const bool out_of_time = (time_limit > 0 && clock.seconds() > time_limit) ||
                             (max_passes > 0 && passes + 1 >= max_passes);
    std::int64_t m = std::max<std::int64_t>(std::max<std::int64_t>(1, m_min),
                                            static_cast<std::int64_t>(rate * s));
    if (out_of_time) m = k - s;  // fill the rest in one batch (sub-batches when on budget)
    m = std::min(m, k - s);
    model.gradient(g.data());
    ++passes;
    // Pool: the largest |g| off the support (g is 0 on it; drop support members).
    const std::int64_t c = std::min(p, s + std::max<std::int64_t>(2 * m, m + 8));
    auto pool_dev = be.alloc_i64(c);
    be.topk_abs(g.data(), p, c, pool_dev.data());
    std::vector<std::int64_t> pool(static_cast<std::size_t>(c));
    be.to_host(pool.data(), pool_dev.data(), c * 8);
    pool.erase(std::remove_if(pool.begin(), pool.end(),
                              [&](std::int64_t j) { return model.in_support(j); }),
               pool.end());
    const std::int64_t pc = static_cast<std::int64_t>(pool.size());
    std::vector<float> gp(static_cast<std::size_t>(pc));
    auto gp_dev = be.alloc_f32(pc);
    be.to_device(pool_dev.data(), pool.data(), pc * 8);
    be.gather(g.data(), pool_dev.data(), pc, gp_dev.data());
    be.to_host(gp.data(), gp_dev.data(), pc * 4);
    // Add m columns in sub-batches, refreshing g on the pool in between (OMP order).
    const bool late = time_limit > 0 && clock.seconds() > time_limit;
    const std::int64_t sub = late ? m : std::max<std::int64_t>(1, m / 8);
    std::vector<std::uint8_t> taken(static_cast<std::size_t>(pc), 0);
    auto e32 = be.alloc_f32(n);
    for (std::int64_t added = 0; added < m;) {
      const std::int64_t take = std::min(sub, m - added);
      std::vector<std::int64_t> order;
      for (std::int64_t t = 0; t < pc; ++t)
        if (!taken[t]) order.push_back(t);
      const std::int64_t tk = std::min<std::int64_t>(take, order.size());
      if (tk == 0) break;
      std::partial_sort(order.begin(), order.begin() + tk, order.end(), [&](auto a, auto b) {
        return std::fabs(gp[a]) > std::fabs(gp[b]) || (std::fabs(gp[a]) == std::fabs(gp[b]) && a < b);
      });
      std::vector<std::int64_t> cols;
      for (std::int64_t t = 0; t < tk; ++t) taken[order[t]] = 1, cols.push_back(pool[order[t]]);
      model.add(cols);
      added += tk;
      if (added < m) {  // g on the pool at the new fit: -A_pool^T e - lam w_bar + alpha
        const auto& e = model.residual();
        std::vector<float> e_host(e.begin(), e.end());
        be.to_device(e32.data(), e_host.data(), n * 4);
        be.atr_subset(pb.A, e32.data(), pool_dev.data(), pc, gp_dev.data());
        be.to_host(gp.data(), gp_dev.data(), pc * 4);
        for (std::int64_t t = 0; t < pc; ++t) {
          const std::int64_t j = pool[t];
          gp[t] = -gp[t] - static_cast<float>(pb.lam) * model.w_bar()[j] +
                  (model.alpha().empty() ? 0.0f : model.alpha()[j]);
        }
      }
    }
    history.push_back(model.value());
  }
  return passes;
}

SolveResult solve_greedy(Backend& be, const Problem& pb, const SolveOptions& opt) {
  Stopwatch clock;
  SupportModel model(be, pb, opt.threads);
  model.reset(warm_support(be, pb, opt.w0));
  std::vector<double> history{model.value()};
  const double rate = opt.greedy_rate >= 0 ? opt.greedy_rate : (pb.k <= 256 ? 0.0 : 0.02);
  const int passes = greedy_grow(model, pb.k, rate, 0, clock, opt.time_limit, history);
  return model_result(be, pb, model, "greedy", std::move(history), passes, true, clock);
}

}  // namespace chita
