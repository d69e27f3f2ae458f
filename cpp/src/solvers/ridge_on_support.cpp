#include "solvers/ridge_on_support.h"

#include <algorithm>

#include "chita/errors.h"
#include "solvers/common.h"        // ObjectiveEvaluator (b in float64)
#include "solvers/dense_linalg.h"  // cholesky_with_jitter, cholesky_solve

namespace chita {

RidgeOnSupport::RidgeOnSupport(Backend& be, const Problem& pb, const std::int64_t* S,
                               std::int64_t k, int threads)
    : be_(be), pb_(pb), n_(pb.A.n), k_(k), threads_(threads), woodbury_(k > pb.A.n),
      idx_(be.alloc_i64(k)), f32_scratch_(be.alloc_f32(std::max(pb.A.n, k))),
      c_dev_(be.alloc_f32(k)) {
  // Own copy of S (device to device through the host: k indices, once).
  std::vector<std::int64_t> s_host(static_cast<std::size_t>(k));
  be.to_host(s_host.data(), S, k * 8);
  be.to_device(idx_.data(), s_host.data(), k * 8);

  auto wbar_dev = be.alloc_f32(k);
  be.gather(pb.w_bar, idx_.data(), k, wbar_dev.data());
  wbar_s_.resize(static_cast<std::size_t>(k));
  be.to_host(wbar_s_.data(), wbar_dev.data(), k * 4);

  // r0 = b - A_S w_bar_S, in float64.
  ObjectiveEvaluator eval(be, pb);
  auto r0 = be.alloc_f64(n_);
  be.ax_sparse(pb.A, idx_.data(), wbar_dev.data(), k, r0.data());
  be.axpby_f64(1.0, eval.b64(), -1.0, r0.data(), r0.data(), n_);

  if (pb.alpha) {
    auto a_dev = be.alloc_f32(k);
    be.gather(pb.alpha, idx_.data(), k, a_dev.data());
    std::vector<float> tmp(static_cast<std::size_t>(k));
    be.to_host(tmp.data(), a_dev.data(), k * 4);
    alpha_s_.assign(tmp.begin(), tmp.end());
    if (woodbury_) {
      auto z = be.alloc_f64(n_);
      be.ax_sparse(pb.A, idx_.data(), a_dev.data(), k, z.data());
      z_.resize(static_cast<std::size_t>(n_));
      be.to_host(z_.data(), z.data(), n_ * 8);
    }
  }
  if (!woodbury_) {
    gram_.resize(static_cast<std::size_t>(k * k));
    be.gram_cols(pb.A, idx_.data(), k, gram_.data());
    be.f64_to_f32(r0.data(), f32_scratch_.data(), n_);
    be.atr_subset(pb.A, f32_scratch_.data(), idx_.data(), k, c_dev_.data());
    std::vector<float> c(static_cast<std::size_t>(k));
    be.to_host(c.data(), c_dev_.data(), k * 4);
    rhs0_.assign(c.begin(), c.end());
  } else {
    gram_.resize(static_cast<std::size_t>(n_ * n_));
    be.gram_rows(pb.A, idx_.data(), k, gram_.data());
    rhs0_.resize(static_cast<std::size_t>(n_));
    be.to_host(rhs0_.data(), r0.data(), n_ * 8);
  }
}

void RidgeOnSupport::solve(double lam, float* x) {
  // In d = x - w_bar_S: (A_S^T A_S + lam I) d = A_S^T r0 - alpha_S.
  std::vector<double> d(static_cast<std::size_t>(k_));
  const bool has_alpha = !alpha_s_.empty();
  if (!woodbury_) {
    std::vector<double> G = gram_;
    for (std::int64_t t = 0; t < k_; ++t) G[t * k_ + t] += lam;
    for (std::int64_t t = 0; t < k_; ++t) d[t] = rhs0_[t] - (has_alpha ? alpha_s_[t] : 0.0);
    cholesky_with_jitter(G, k_, threads_);
    cholesky_solve(G, k_, d);
  } else {
    // Woodbury: d = A_S^T (lam I + K)^{-1} (r0 + A_S alpha_S / lam) - alpha_S / lam.
    CHITA_THROW_IF_NOT(!has_alpha || lam > 0,
                       "lam=0 with a linear term alpha needs k <= n (k=", k_, ", n=", n_,
                       "); pass lam > 0");
    std::vector<double> K = gram_;
    for (std::int64_t i = 0; i < n_; ++i) K[i * n_ + i] += lam;
    std::vector<double> rhs = rhs0_;
    if (has_alpha)
      for (std::int64_t i = 0; i < n_; ++i) rhs[i] += z_[i] / lam;
    cholesky_with_jitter(K, n_, threads_);
    cholesky_solve(K, n_, rhs);
    std::vector<float> y(rhs.begin(), rhs.end());
    be_.to_device(f32_scratch_.data(), y.data(), n_ * 4);
    be_.atr_subset(pb_.A, f32_scratch_.data(), idx_.data(), k_, c_dev_.data());
    std::vector<float> c(static_cast<std::size_t>(k_));
    be_.to_host(c.data(), c_dev_.data(), k_ * 4);
    for (std::int64_t t = 0; t < k_; ++t) d[t] = c[t] - (has_alpha ? alpha_s_[t] / lam : 0.0);
  }
  std::vector<float> out(static_cast<std::size_t>(k_));
  for (std::int64_t t = 0; t < k_; ++t) out[t] = static_cast<float>(wbar_s_[t] + d[t]);
  be_.to_device(x, out.data(), k_ * 4);
}

}  // namespace chita
