// active: CHITA's active-set IHT. Start from the support of H_{1.5k} of one gradient step;
// run IHT on the active columns only; one full gradient pass finds coordinates that would
// enter H_k(w - g/L); grow the set with them; repeat until none enter.
#include <algorithm>
#include <cmath>
#include <iterator>  // back_inserter

#include "solvers/lipschitz.h"
#include "solvers/quality_methods.h"
#include "solvers/step_size.h"  // relative_decrease

namespace chita {
namespace {

struct Host {  // a sparse iterate on the host, indices sorted
  std::vector<std::int64_t> idx;
  std::vector<float> val;
};

class ActiveSet {
 public:
  ActiveSet(Backend& be, const Problem& pb, const SolveOptions& opt)
      : be_(be), pb_(pb), opt_(opt), n_(pb.A.n), p_(pb.A.p), k_(pb.k), eval_(be, pb),
        r_(be.alloc_f64(n_)), r_try_(be.alloc_f64(n_)), r32_(be.alloc_f32(n_)),
        idx_(be.alloc_i64(k_)), val_(be.alloc_f32(k_)) {}

  double f(const Host& x, Buffer<double>& r) {
    be_.to_device(idx_.data(), x.idx.data(), k_ * 8);
    be_.to_device(val_.data(), x.val.data(), k_ * 4);
    return eval_.evaluate(idx_.data(), val_.data(), k_, r.data());
  }

  // g over columns idx (device, length m) at the current iterate: -A^T r + lam (w - w_bar) + alpha.
  std::vector<float> grad(const std::vector<std::int64_t>& cols, const std::vector<float>& w) {
    const std::int64_t m = static_cast<std::int64_t>(cols.size());
    auto idx = be_.alloc_i64(m);
    auto out = be_.alloc_f32(m);
    be_.to_device(idx.data(), cols.data(), m * 8);
    be_.f64_to_f32(r_.data(), r32_.data(), n_);
    be_.atr_subset(pb_.A, r32_.data(), idx.data(), m, out.data());
    std::vector<float> g(static_cast<std::size_t>(m));
    be_.to_host(g.data(), out.data(), m * 4);
    for (std::int64_t t = 0; t < m; ++t) {
      const std::int64_t j = cols[t];
      g[t] = -g[t] + static_cast<float>(pb_.lam) * (w[t] - wbar_[j]) + (alpha_.empty() ? 0.f : alpha_[j]);
    }
    return g;
  }

  Host threshold(const std::vector<std::int64_t>& cols, const std::vector<float>& v) const {
    std::vector<std::int64_t> order(cols.size());
    for (std::size_t t = 0; t < order.size(); ++t) order[t] = static_cast<std::int64_t>(t);
    std::nth_element(order.begin(), order.begin() + (k_ - 1), order.end(), [&](auto a, auto b) {
      return std::fabs(v[a]) > std::fabs(v[b]) || (std::fabs(v[a]) == std::fabs(v[b]) && cols[a] < cols[b]);
    });
    order.resize(static_cast<std::size_t>(k_));
    std::sort(order.begin(), order.end());  // cols is sorted, so indices stay sorted
    Host x;
    for (auto t : order) x.idx.push_back(cols[t]), x.val.push_back(v[t]);
    return x;
  }

  SolveResult run() {
    Stopwatch clock;
    wbar_.resize(static_cast<std::size_t>(p_));
    be_.to_host(wbar_.data(), pb_.w_bar, p_ * 4);
    if (pb_.alpha) alpha_.resize(static_cast<std::size_t>(p_)), be_.to_host(alpha_.data(), pb_.alpha, p_ * 4);
    const double tau = 1.0 / lipschitz_constant(be_, pb_, opt_.power_iters);
    std::vector<std::int64_t> all(static_cast<std::size_t>(p_));
    for (std::int64_t j = 0; j < p_; ++j) all[j] = j;
    std::vector<float> start(wbar_);
    if (opt_.w0) be_.to_host(start.data(), opt_.w0, p_ * 4);
    cur_ = threshold(all, start);
    double fc = f(cur_, r_);
    SolveResult res;
    res.history.push_back(fc);
    // Active set: the support of H_{1.5k}(w - tau g).
    auto v = step(all, tau);
    const std::int64_t a0 = std::min(p_, k_ + (k_ + 1) / 2);
    std::vector<std::int64_t> act, top_a = top(all, v, a0);
    std::set_union(top_a.begin(), top_a.end(), cur_.idx.begin(), cur_.idx.end(),
                   std::back_inserter(act));  // the start stays representable
    for (int outer = 0; outer < 50; ++outer) {
      fc = inner_iht(act, tau, fc, res, clock);
      // The backsolve on the support: exact on it.
      Host bso = cur_;
      be_.to_device(idx_.data(), cur_.idx.data(), k_ * 8);
      backsolve(be_, pb_, idx_.data(), k_, val_.data(), opt_.threads);
      be_.to_host(bso.val.data(), val_.data(), k_ * 4);
      const double fb = f(bso, r_try_);
      if (fb < fc) cur_ = bso, fc = fb, std::swap(r_, r_try_);
      // Entering coordinates: the support of H_k(w - tau g) over all p, outside act.
      v = step(all, tau);
      const Host t = threshold(all, v);
      std::vector<std::int64_t> grow;
      std::set_difference(t.idx.begin(), t.idx.end(), act.begin(), act.end(), std::back_inserter(grow));
      if (grow.empty()) { res.converged = true; break; }
      std::vector<std::int64_t> merged;
      std::set_union(act.begin(), act.end(), grow.begin(), grow.end(), std::back_inserter(merged));
      act = std::move(merged);
      if (opt_.time_limit > 0 && clock.seconds() > opt_.time_limit) break;
    }
    SolveResult out = make_result(be_, pb_, cur_.idx, cur_.val, "active");
    out.history = std::move(res.history);
    out.history.push_back(out.objective);
    out.iterations = res.iterations;
    out.converged = res.converged;
    out.seconds = clock.seconds();
    return out;
  }

 private:
  // w - tau g over cols (cols sorted; cur_ entries in place, zeros elsewhere).
  std::vector<float> on(const std::vector<std::int64_t>& cols) const {  // cur_ ⊂ cols
    std::vector<float> w(cols.size(), 0.0f);
    std::size_t q = 0;
    for (std::size_t s = 0; s < cur_.idx.size(); ++s) {
      while (cols[q] < cur_.idx[s]) ++q;
      w[q] = cur_.val[s];
    }
    return w;
  }

  std::vector<float> step(const std::vector<std::int64_t>& cols, double t) {
    std::vector<float> w = on(cols);
    auto g = grad(cols, w);
    for (std::size_t s = 0; s < w.size(); ++s) w[s] -= static_cast<float>(t) * g[s];
    return w;
  }

  std::vector<std::int64_t> top(const std::vector<std::int64_t>& cols, const std::vector<float>& v,
                                std::int64_t m) const {
    std::vector<std::int64_t> order(cols.size());
    for (std::size_t t = 0; t < order.size(); ++t) order[t] = static_cast<std::int64_t>(t);
    std::nth_element(order.begin(), order.begin() + (m - 1), order.end(),
                     [&](auto a, auto b) { return std::fabs(v[a]) > std::fabs(v[b]); });
    std::vector<std::int64_t> out;
    for (std::int64_t t = 0; t < m; ++t) out.push_back(cols[order[t]]);
    std::sort(out.begin(), out.end());
    return out;
  }

  // IHT on the active columns, with step doubling (CHITA's trials) from 1/L.
  double inner_iht(const std::vector<std::int64_t>& act, double tau, double fc, SolveResult& res,
                   const Stopwatch& clock) {
    for (int it = 0; it < opt_.max_iter; ++it) {
      if (opt_.time_limit > 0 && clock.seconds() > opt_.time_limit) break;
      Host best;
      double fbest = fc;
      double t = tau;
      const std::vector<float> w0 = on(act);
      auto g = grad(act, w0);
      for (int d = 0; d <= opt_.max_doublings; ++d, t *= 2) {
        std::vector<float> v(w0);
        for (std::size_t s = 0; s < v.size(); ++s) v[s] -= static_cast<float>(t) * g[s];
        Host x = threshold(act, v);
        const double fx = f(x, r_try_);
        if (!(fx < fbest)) break;
        fbest = fx, best = std::move(x);
      }
      if (best.idx.empty()) break;
      cur_ = best;
      f(cur_, r_);
      const double f_old = fc;
      fc = fbest;
      ++res.iterations;
      res.history.push_back(fc);
      if (relative_decrease(f_old, fc) < opt_.tol) break;
    }
    return fc;
  }

  Backend& be_;
  const Problem& pb_;
  const SolveOptions& opt_;
  const std::int64_t n_, p_, k_;
  ObjectiveEvaluator eval_;
  Buffer<double> r_, r_try_;
  Buffer<float> r32_;
  Buffer<std::int64_t> idx_;
  Buffer<float> val_;
  std::vector<float> wbar_, alpha_;
  Host cur_;
};

}  // namespace

SolveResult solve_active(Backend& be, const Problem& pb, const SolveOptions& opt) {
  ActiveSet solver(be, pb, opt);
  return solver.run();
}

}  // namespace chita
