#include "solvers/common.h"

#include <vector>

#include "chita/errors.h"
#include "solvers/ridge_on_support.h"

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
  RidgeOnSupport(be, pb, S, k, threads).solve(pb.lam, x);
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
