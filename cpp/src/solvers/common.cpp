#include "solvers/common.h"

#include <vector>

#include "chita/errors.h"
#include "solvers/dense_linalg.h"

namespace chita {

ObjectiveEvaluator::ObjectiveEvaluator(Backend& be, const Problem& pb)
    : be_(be), pb_(pb), b64_(be.alloc_f64(pb.A.n)), scratch_(be.alloc_f32(pb.k)) {
  const std::int64_t n = pb.A.n;
  std::vector<float> b_host(static_cast<std::size_t>(n));
  be.to_host(b_host.data(), pb.b, n * static_cast<std::int64_t>(sizeof(float)));
  std::vector<double> b_wide(b_host.begin(), b_host.end());
  be.to_device(b64_.data(), b_wide.data(), n * static_cast<std::int64_t>(sizeof(double)));
  wbar_sq_ = be.dot(pb.w_bar, pb.w_bar, pb.A.p);
}

double ObjectiveEvaluator::evaluate(const std::int64_t* S, const float* x, std::int64_t k,
                                    double* r) {
  be_.ax_sparse(pb_.A, S, x, k, r);
  be_.axpby_f64(1.0, b64_.data(), -1.0, r, r, pb_.A.n);
  return from_residual(S, x, k, r);
}

double ObjectiveEvaluator::from_residual(const std::int64_t* S, const float* x,
                                         std::int64_t k, const double* r) {
  CHITA_ASSERT(k <= scratch_.size());
  double f = 0.5 * be_.dot_f64(r, r, pb_.A.n);
  if (pb_.lam > 0) {
    be_.gather(pb_.w_bar, S, k, scratch_.data());
    const double wbar_s_sq = be_.dot(scratch_.data(), scratch_.data(), k);
    const double off_support = wbar_sq_ - wbar_s_sq;
    f += 0.5 * pb_.lam * (off_support + be_.sq_dist(x, scratch_.data(), k));
  }
  if (pb_.alpha) {
    be_.gather(pb_.alpha, S, k, scratch_.data());
    f += be_.dot(scratch_.data(), x, k);
  }
  return f;
}

void backsolve(Backend& be, const Problem& pb, const std::int64_t* S, std::int64_t k,
               float* x, int threads) {
  // In d = x - w_bar_S: (A_S^T A_S + lam I) d = A_S^T r0 - alpha_S, r0 = b - A_S w_bar_S.
  const std::int64_t n = pb.A.n;
  const double lam = pb.lam;
  auto wbar_s = be.alloc_f32(k);
  be.gather(pb.w_bar, S, k, wbar_s.data());
  ObjectiveEvaluator eval(be, pb);
  auto r0 = be.alloc_f64(n);
  be.ax_sparse(pb.A, S, wbar_s.data(), k, r0.data());
  be.axpby_f64(1.0, eval.b64(), -1.0, r0.data(), r0.data(), n);

  std::vector<double> alpha_s;
  if (pb.alpha) {
    std::vector<float> tmp(static_cast<std::size_t>(k));
    auto dev = be.alloc_f32(k);
    be.gather(pb.alpha, S, k, dev.data());
    be.to_host(tmp.data(), dev.data(), k * 4);
    alpha_s.assign(tmp.begin(), tmp.end());
  }
  std::vector<double> d(static_cast<std::size_t>(k));
  auto f32_n = be.alloc_f32(std::max(n, k));

  if (k <= n) {
    std::vector<double> G(static_cast<std::size_t>(k * k));
    be.gram_cols(pb.A, S, k, G.data());
    for (std::int64_t t = 0; t < k; ++t) G[t * k + t] += lam;
    be.f64_to_f32(r0.data(), f32_n.data(), n);
    auto c_dev = be.alloc_f32(k);
    be.atr_subset(pb.A, f32_n.data(), S, k, c_dev.data());
    std::vector<float> c(static_cast<std::size_t>(k));
    be.to_host(c.data(), c_dev.data(), k * 4);
    for (std::int64_t t = 0; t < k; ++t) d[t] = c[t] - (pb.alpha ? alpha_s[t] : 0.0);
    cholesky_with_jitter(G, k, threads);
    cholesky_solve(G, k, d);
  } else {
    // Woodbury: d = A_S^T (lam I + K)^{-1} (r0 + A_S alpha_S / lam) - alpha_S / lam.
    CHITA_THROW_IF_NOT(!pb.alpha || lam > 0,
                       "lam=0 with a linear term alpha needs k <= n (k=", k, ", n=", n,
                       "); pass lam > 0");
    std::vector<double> K(static_cast<std::size_t>(n * n));
    be.gram_rows(pb.A, S, k, K.data());
    for (std::int64_t i = 0; i < n; ++i) K[i * n + i] += lam;
    std::vector<double> rhs(static_cast<std::size_t>(n));
    be.to_host(rhs.data(), r0.data(), n * 8);
    if (pb.alpha) {
      auto a_dev = be.alloc_f32(k);
      be.gather(pb.alpha, S, k, a_dev.data());
      auto z = be.alloc_f64(n);
      be.ax_sparse(pb.A, S, a_dev.data(), k, z.data());
      std::vector<double> z_host(static_cast<std::size_t>(n));
      be.to_host(z_host.data(), z.data(), n * 8);
      for (std::int64_t i = 0; i < n; ++i) rhs[i] += z_host[i] / lam;
    }
    cholesky_with_jitter(K, n, threads);
    cholesky_solve(K, n, rhs);
    std::vector<float> y(rhs.begin(), rhs.end());
    be.to_device(f32_n.data(), y.data(), n * 4);
    auto c_dev = be.alloc_f32(k);
    be.atr_subset(pb.A, f32_n.data(), S, k, c_dev.data());
    std::vector<float> c(static_cast<std::size_t>(k));
    be.to_host(c.data(), c_dev.data(), k * 4);
    for (std::int64_t t = 0; t < k; ++t) d[t] = c[t] - (pb.alpha ? alpha_s[t] / lam : 0.0);
  }
  std::vector<float> wb(static_cast<std::size_t>(k)), out(static_cast<std::size_t>(k));
  be.to_host(wb.data(), wbar_s.data(), k * 4);
  for (std::int64_t t = 0; t < k; ++t) out[t] = static_cast<float>(wb[t] + d[t]);
  be.to_device(x, out.data(), k * 4);
}

void finish_result(Backend& be, const Problem& pb, const SparseIterate& it, double objective,
                   SolveResult& out) {
  const std::int64_t k = it.k;
  out.support.resize(static_cast<std::size_t>(k));
  std::vector<float> vals(static_cast<std::size_t>(k));
  be.to_host(out.support.data(), it.idx.data(), k * 8);
  be.to_host(vals.data(), it.val.data(), k * 4);
  out.w.assign(static_cast<std::size_t>(pb.A.p), 0.0f);
  for (std::int64_t t = 0; t < k; ++t) out.w[out.support[t]] = vals[t];
  out.objective = objective;
}

void top_k_of(Backend& be, const float* dense, std::int64_t p, SparseIterate& it) {
  be.topk_abs(dense, p, it.k, it.idx.data());
  be.gather(dense, it.idx.data(), it.k, it.val.data());
}

}  // namespace chita
