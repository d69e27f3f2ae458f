#include "solvers/support_model.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "chita/errors.h"
#include "host_blas.h"
#include "solvers/common.h"        // backsolve
#include "solvers/dense_linalg.h"  // cholesky_with_jitter

namespace chita {

bool chol_rank1(std::vector<double>& L, std::int64_t n, std::vector<double>& x, double sign) {
  for (std::int64_t c = 0; c < n; ++c) {
    double* col = &L[c * n];
    const double lcc = col[c];
    const double r2 = lcc * lcc + sign * x[c] * x[c];
    if (!(r2 > 0.0) || !std::isfinite(r2)) return false;
    const double r = std::sqrt(r2), cs = r / lcc, sn = x[c] / lcc;
    col[c] = r;
    blas::rotate_column(col + c + 1, x.data() + c + 1, n - c - 1, sign, cs, sn);
  }
  return true;
}

void chol_forward_colmajor(const std::vector<double>& L, std::int64_t n, double* x) {
  for (std::int64_t c = 0; c < n; ++c) {  // column by column
    const double* col = &L[c * n];
    x[c] /= col[c];
    blas::axpy(-x[c], col + c + 1, x + c + 1, n - c - 1);
  }
}

void chol_solve_colmajor(const std::vector<double>& L, std::int64_t n, std::vector<double>& x) {
  chol_forward_colmajor(L, n, x.data());  // L y = rhs
  for (std::int64_t c = n - 1; c >= 0; --c) {  // L^T x = y: contiguous dot products
    const double* col = &L[c * n];
    x[c] = (x[c] - blas::dot(col + c + 1, x.data() + c + 1, n - c - 1)) / col[c];
  }
}

SupportModel::SupportModel(Backend& be, const Problem& pb, int threads)
    : be_(be), pb_(pb), threads_(threads), n_(pb.A.n), p_(pb.A.p),
      wbar_(static_cast<std::size_t>(pb.A.p)), b_(static_cast<std::size_t>(pb.A.n)),
      in_S_(static_cast<std::size_t>(pb.A.p), 0), one_dev_(be.alloc_f32(1)),
      e32_dev_(be.alloc_f32(pb.A.n)), col_dev_(be.alloc_f64(pb.A.n)) {
  CHITA_THROW_IF_NOT(!pb.alpha || pb.lam > 0,
                     "this method needs lam > 0 when a linear term alpha is given");
  be.to_host(wbar_.data(), pb.w_bar, p_ * 4);
  if (pb.alpha) {
    alpha_.resize(static_cast<std::size_t>(p_));
    be.to_host(alpha_.data(), pb.alpha, p_ * 4);
  }
  std::vector<float> b32(static_cast<std::size_t>(n_));
  be.to_host(b32.data(), pb.b, n_ * 4);
  double b_sq = 0;
  for (std::int64_t i = 0; i < n_; ++i) b_[i] = b32[i], b_sq += b_[i] * b_[i];
  for (float v : wbar_) wbar_sq_ += static_cast<double>(v) * v;
  // lam = 0: a vanishing ridge keeps P invertible; the final values come from a backsolve.
  lam_ = pb.lam > 0 ? pb.lam : 1e-10 * (b_sq / static_cast<double>(n_) + 1e-30);
  const float one = 1.0f;
  be.to_device(one_dev_.data(), &one, 4);
}

void SupportModel::fetch_columns(const std::vector<std::int64_t>& cols,
                                 std::vector<double>& out) const {
  // Column j = A e_j: ax_sparse with a single index, so this works on every backend.
  const std::int64_t m = static_cast<std::int64_t>(cols.size());
  auto& self = const_cast<SupportModel&>(*this);
  if (idx_dev_.size() < m) self.idx_dev_ = be_.alloc_i64(std::max<std::int64_t>(m, 64));
  if (m > 0) be_.to_device(idx_dev_.data(), cols.data(), m * 8);
  out.resize(static_cast<std::size_t>(m * n_));
  for (std::int64_t t = 0; t < m; ++t) {
    be_.ax_sparse(pb_.A, idx_dev_.data() + t, one_dev_.data(), 1, col_dev_.data());
    be_.to_host(&out[t * n_], col_dev_.data(), n_ * 8);
  }
}

void SupportModel::apply(State& s, const std::vector<std::int64_t>& cols,
                         const std::vector<double>& C, double sign) const {
  std::vector<double> x(static_cast<std::size_t>(n_));
  for (std::size_t t = 0; t < cols.size(); ++t) {
    const std::int64_t j = cols[t];
    const double* a = &C[t * n_];
    const double wb = wbar_[j], al = alpha_.empty() ? 0.0 : alpha_[j];
    for (std::int64_t i = 0; i < n_; ++i) {
      s.r0[i] -= sign * wb * a[i];
      s.z[i] += sign * al * a[i];
    }
    s.alpha_sq += sign * al * al;
    s.alpha_wbar += sign * al * wb;
    s.wbar_out_sq -= sign * wb * wb;
    std::copy(a, a + n_, x.begin());
    if (!chol_rank1(s.L, n_, x, sign)) s.L.clear();  // lost definiteness: caller refactors
  }
}

double SupportModel::evaluate(const State& s, std::vector<double>* e_out) const {
  std::vector<double> e(static_cast<std::size_t>(n_));
  for (std::int64_t i = 0; i < n_; ++i) e[i] = lam_ * s.r0[i] + s.z[i];
  chol_solve_colmajor(s.L, n_, e);
  double er = 0, ez = 0;
  for (std::int64_t i = 0; i < n_; ++i) er += e[i] * s.r0[i], ez += e[i] * s.z[i];
  const double f = 0.5 * er + (alpha_.empty() ? 0.0 : (ez - s.alpha_sq) / (2 * lam_)) +
                   s.alpha_wbar + 0.5 * pb_.lam * std::max(s.wbar_out_sq, 0.0);
  if (e_out) *e_out = std::move(e);
  return f;
}

void SupportModel::refactor(State& s, const std::vector<std::int64_t>& S) const {
  std::vector<std::int64_t> sorted(S);
  std::sort(sorted.begin(), sorted.end());
  const std::int64_t k = static_cast<std::int64_t>(sorted.size());
  std::vector<double> P(static_cast<std::size_t>(n_ * n_), 0.0);
  s.r0 = b_;
  s.z.assign(static_cast<std::size_t>(n_), 0.0);
  s.alpha_sq = s.alpha_wbar = 0;
  double wbar_in = 0;
  if (k > 0) {
    auto idx = be_.alloc_i64(k);
    be_.to_device(idx.data(), sorted.data(), k * 8);
    be_.gram_rows(pb_.A, idx.data(), k, P.data());
    std::vector<float> vals(static_cast<std::size_t>(k));
    auto vals_dev = be_.alloc_f32(k);
    auto out = be_.alloc_f64(n_);
    std::vector<double> host(static_cast<std::size_t>(n_));
    for (std::int64_t t = 0; t < k; ++t) vals[t] = wbar_[sorted[t]];
    be_.to_device(vals_dev.data(), vals.data(), k * 4);
    be_.ax_sparse(pb_.A, idx.data(), vals_dev.data(), k, out.data());
    be_.to_host(host.data(), out.data(), n_ * 8);
    for (std::int64_t i = 0; i < n_; ++i) s.r0[i] -= host[i];
    if (!alpha_.empty()) {
      for (std::int64_t t = 0; t < k; ++t) vals[t] = alpha_[sorted[t]];
      be_.to_device(vals_dev.data(), vals.data(), k * 4);
      be_.ax_sparse(pb_.A, idx.data(), vals_dev.data(), k, out.data());
      be_.to_host(s.z.data(), out.data(), n_ * 8);
      for (std::int64_t j : sorted)
        s.alpha_sq += double(alpha_[j]) * alpha_[j], s.alpha_wbar += double(alpha_[j]) * wbar_[j];
    }
    for (std::int64_t j : sorted) wbar_in += double(wbar_[j]) * wbar_[j];
  }
  for (std::int64_t i = 0; i < n_; ++i) P[i * n_ + i] += lam_;
  factor(s, P);
  s.wbar_out_sq = wbar_sq_ - wbar_in;
}

void SupportModel::factor(State& s, std::vector<double>& P) const {
  cholesky_with_jitter(P, n_, threads_);  // row-major lower == column-major upper
  s.L.assign(static_cast<std::size_t>(n_ * n_), 0.0);
  for (std::int64_t r = 0; r < n_; ++r)
    for (std::int64_t c = 0; c <= r; ++c) s.L[c * n_ + r] = P[r * n_ + c];
}

void SupportModel::shift_terms(State& s, const std::vector<std::int64_t>& cols,
                               double sign) const {
  const std::int64_t m = static_cast<std::int64_t>(cols.size());
  if (m == 0) return;
  std::vector<std::int64_t> sorted(cols);
  std::sort(sorted.begin(), sorted.end());
  auto idx = be_.alloc_i64(m);
  auto vals_dev = be_.alloc_f32(m);
  auto out = be_.alloc_f64(n_);
  std::vector<float> vals(static_cast<std::size_t>(m));
  std::vector<double> host(static_cast<std::size_t>(n_));
  be_.to_device(idx.data(), sorted.data(), m * 8);
  for (std::int64_t t = 0; t < m; ++t) vals[t] = wbar_[sorted[t]];
  be_.to_device(vals_dev.data(), vals.data(), m * 4);
  be_.ax_sparse(pb_.A, idx.data(), vals_dev.data(), m, out.data());
  be_.to_host(host.data(), out.data(), n_ * 8);
  for (std::int64_t i = 0; i < n_; ++i) s.r0[i] -= sign * host[i];
  for (std::int64_t j : sorted) s.wbar_out_sq -= sign * double(wbar_[j]) * wbar_[j];
  if (alpha_.empty()) return;
  for (std::int64_t t = 0; t < m; ++t) vals[t] = alpha_[sorted[t]];
  be_.to_device(vals_dev.data(), vals.data(), m * 4);
  be_.ax_sparse(pb_.A, idx.data(), vals_dev.data(), m, out.data());
  be_.to_host(host.data(), out.data(), n_ * 8);
  for (std::int64_t i = 0; i < n_; ++i) s.z[i] += sign * host[i];
  for (std::int64_t j : sorted)
    s.alpha_sq += sign * double(alpha_[j]) * alpha_[j],
        s.alpha_wbar += sign * double(alpha_[j]) * wbar_[j];
}

void SupportModel::apply_batch(State& s, const std::vector<std::int64_t>& add,
                               const std::vector<std::int64_t>& drop) const {
  const std::int64_t n = n_;
  // P = L L^T, accumulated column-major (contiguous inner loop), then mirrored row-major.
  std::vector<double> P(static_cast<std::size_t>(n * n), 0.0);
  for (std::int64_t t = 0; t < n; ++t) {
    const double* Lt = &s.L[t * n];
    for (std::int64_t c = t; c < n; ++c) blas::axpy(Lt[c], Lt + c, &P[c * n + c], n - c);
  }
  for (std::int64_t c = 0; c < n; ++c)
    for (std::int64_t r = c + 1; r < n; ++r) P[r * n + c] = P[c * n + r];
  std::vector<double> G(static_cast<std::size_t>(n * n));
  for (int pass = 0; pass < 2; ++pass) {
    const auto& cols = pass == 0 ? add : drop;
    const std::int64_t m = static_cast<std::int64_t>(cols.size());
    if (m == 0) continue;
    std::vector<std::int64_t> sorted(cols);
    std::sort(sorted.begin(), sorted.end());
    auto idx = be_.alloc_i64(m);
    be_.to_device(idx.data(), sorted.data(), m * 8);
    be_.gram_rows(pb_.A, idx.data(), m, G.data());
    const double sign = pass == 0 ? 1.0 : -1.0;
    for (std::int64_t i = 0; i < n * n; ++i) P[i] += sign * G[i];
  }
  shift_terms(s, add, +1.0);
  shift_terms(s, drop, -1.0);
  factor(s, P);
}

bool batch_is_cheaper(std::int64_t moved, std::int64_t n) {
  // rank-1: ~2 n^2 flops per column; batch: ~n^2 per column (gram) + ~2/3 n^3 (L L^T, chol)
  return 4 * moved > 3 * n;
}

void SupportModel::reset(const std::vector<std::int64_t>& S) {
  std::fill(in_S_.begin(), in_S_.end(), 0);
  for (std::int64_t j : S) in_S_[j] = 1;
  S_ = S;
  refactor(st_, S_);
  batches_ = 0;
  f_ = evaluate(st_, &e_);
}

void SupportModel::add(const std::vector<std::int64_t>& cols) { swap({}, cols); }

double SupportModel::value_after_swap(const std::vector<std::int64_t>& drop,
                                      const std::vector<std::int64_t>& add) const {
  State& s = trial_;
  s = st_;  // copy-assignment keeps trial_'s buffers
  if (batch_is_cheaper(static_cast<std::int64_t>(add.size() + drop.size()), n_)) {
    apply_batch(s, add, drop);
    return evaluate(s, nullptr);
  }
  std::vector<double> C;
  fetch_columns(add, C);
  apply(s, add, C, +1.0);
  fetch_columns(drop, C);
  if (!s.L.empty()) apply(s, drop, C, -1.0);
  if (s.L.empty()) return std::numeric_limits<double>::infinity();  // refused, stay safe
  return evaluate(s, nullptr);
}

void SupportModel::swap(const std::vector<std::int64_t>& drop,
                        const std::vector<std::int64_t>& add) {
  for (std::int64_t j : drop) in_S_[j] = 0;
  for (std::int64_t j : add) in_S_[j] = 1;
  std::vector<std::int64_t> S;
  S.reserve(S_.size() + add.size());
  for (std::int64_t j : S_)
    if (in_S_[j]) S.push_back(j);
  for (std::int64_t j : add) S.push_back(j);
  S_ = std::move(S);
  const std::int64_t moved = static_cast<std::int64_t>(add.size() + drop.size());
  const std::int64_t k = static_cast<std::int64_t>(S_.size());
  if (batch_is_cheaper(moved, n_)) {
    // A big batch: one gram of the moved columns (or of all of S when that is as cheap,
    // and every 32 batches so that rounding in L L^T cannot build up).
    if (k <= moved + n_ / 3 || ++batches_ >= 32) {
      refactor(st_, S_);
      batches_ = 0;
    } else {
      apply_batch(st_, add, drop);
    }
    f_ = evaluate(st_, &e_);
    return;
  }
  std::vector<double> C;
  fetch_columns(add, C);
  apply(st_, add, C, +1.0);
  if (!drop.empty() && !st_.L.empty()) {
    fetch_columns(drop, C);
    apply(st_, drop, C, -1.0);
  }
  if (st_.L.empty()) refactor(st_, S_);  // a downdate lost definiteness: start clean
  f_ = evaluate(st_, &e_);
}

std::vector<double> SupportModel::pair_values(const std::vector<std::int64_t>& drop,
                                              const std::vector<std::int64_t>& add) const {
  // With x~ = L^{-1} x, x^T P^{-1} y = x~ . y~. After the swap P' = P + a_j a_j^T - a_i a_i^T
  // and r0, z move along a_j, a_i; every quantity of f lives in span{r0, z, a_j, a_i}, so
  // f' needs the 4 x 4 Gram matrix of their tilde vectors and a 2 x 2 Woodbury inverse.
  const std::int64_t n = n_, nd = static_cast<std::int64_t>(drop.size()),
                     na = static_cast<std::int64_t>(add.size());
  std::vector<double> out(static_cast<std::size_t>(nd * na),
                          std::numeric_limits<double>::infinity());
  if (nd == 0 || na == 0 || st_.L.empty()) return out;
  std::vector<double> r = st_.r0, z = st_.z, Ud, Ua;
  chol_forward_colmajor(st_.L, n, r.data());
  chol_forward_colmajor(st_.L, n, z.data());
  fetch_columns(drop, Ud);
  fetch_columns(add, Ua);
  for (std::int64_t t = 0; t < nd; ++t) chol_forward_colmajor(st_.L, n, &Ud[t * n]);
  for (std::int64_t t = 0; t < na; ++t) chol_forward_colmajor(st_.L, n, &Ua[t * n]);
  struct Column { double q, s, t, wb, al; };  // u.u, r~.u, z~.u, w_bar_j, alpha_j
  auto describe = [&](const std::vector<double>& U, const std::vector<std::int64_t>& cols) {
    std::vector<Column> c(cols.size());
    for (std::size_t t = 0; t < cols.size(); ++t) {
      const double* u = &U[t * n];
      c[t] = {blas::dot(u, u, n), blas::dot(r.data(), u, n), blas::dot(z.data(), u, n),
              wbar_[cols[t]], alpha_.empty() ? 0.0 : alpha_[cols[t]]};
    }
    return c;
  };
  const auto cd = describe(Ud, drop), ca = describe(Ua, add);
  const double g_rr = blas::dot(r.data(), r.data(), n), g_rz = blas::dot(r.data(), z.data(), n),
               g_zz = blas::dot(z.data(), z.data(), n);
  for (std::int64_t d = 0; d < nd; ++d) {
    const Column& I = cd[d];
    if (!(1.0 - I.q > 1e-12)) continue;  // dropping i would (nearly) lose definiteness
    for (std::int64_t a = 0; a < na; ++a) {
      const Column& J = ca[a];
      const double h = blas::dot(&Ud[d * n], &Ua[a * n], n);
      // Basis (r0, z, a_j, a_i): Gram G of the tilde vectors; Woodbury core
      // M = C^-1 + U^T P^-1 U with U = [a_j, a_i], C = diag(1, -1).
      const double G[4][4] = {{g_rr, g_rz, J.s, I.s}, {g_rz, g_zz, J.t, I.t},
                              {J.s, J.t, J.q, h}, {I.s, I.t, h, I.q}};
      const double m00 = 1.0 + J.q, m01 = h, m11 = I.q - 1.0;
      const double det = m00 * m11 - m01 * m01;
      if (!(det < 0.0) || !std::isfinite(det)) continue;  // P' not positive definite
      // Coefficients of r0' = r0 - wb_j a_j + wb_i a_i and z' = z + al_j a_j - al_i a_i.
      const double cr[4] = {1.0, 0.0, -J.wb, I.wb}, cz[4] = {0.0, 1.0, J.al, -I.al};
      double cy[4];
      for (int t = 0; t < 4; ++t) cy[t] = lam_ * cr[t] + cz[t];
      // x^T P'^{-1} y = cx^T G cy - (G cx)_{2,3}^T M^{-1} (G cy)_{2,3}.
      auto form = [&](const double* cx, const double* cw) {
        double gx[4] = {0, 0, 0, 0}, gw[4] = {0, 0, 0, 0}, plain = 0.0;
        for (int s = 0; s < 4; ++s)
          for (int t = 0; t < 4; ++t) gx[s] += G[s][t] * cx[t], gw[s] += G[s][t] * cw[t];
        for (int s = 0; s < 4; ++s) plain += cx[s] * gw[s];
        const double v0 = (m11 * gw[2] - m01 * gw[3]) / det, v1 = (m00 * gw[3] - m01 * gw[2]) / det;
        return plain - (gx[2] * v0 + gx[3] * v1);
      };
      const double er = form(cy, cr);
      const double alpha_sq = st_.alpha_sq + J.al * J.al - I.al * I.al;
      const double alpha_wbar = st_.alpha_wbar + J.al * J.wb - I.al * I.wb;
      const double wbar_out_sq = st_.wbar_out_sq - J.wb * J.wb + I.wb * I.wb;
      out[d * na + a] = 0.5 * er +
                        (alpha_.empty() ? 0.0 : (form(cy, cz) - alpha_sq) / (2 * lam_)) +
                        alpha_wbar + 0.5 * pb_.lam * std::max(wbar_out_sq, 0.0);
    }
  }
  return out;
}

void SupportModel::gradient(float* g_dev) {
  std::vector<float> e32(e_.begin(), e_.end());
  be_.to_device(e32_dev_.data(), e32.data(), n_ * 4);
  be_.atr(pb_.A, e32_dev_.data(), g_dev);
  be_.axpby(-1.0f, g_dev, static_cast<float>(-pb_.lam), pb_.w_bar, g_dev, p_);
  if (pb_.alpha) be_.axpby(1.0f, g_dev, 1.0f, pb_.alpha, g_dev, p_);
  const std::int64_t k = static_cast<std::int64_t>(S_.size());
  if (k == 0) return;
  auto idx = be_.alloc_i64(k);
  auto zeros = be_.alloc_f32(k);
  be_.to_device(idx.data(), S_.data(), k * 8);
  be_.fill(zeros.data(), k, 0.0f);
  be_.scatter(zeros.data(), idx.data(), k, g_dev);
}

Buffer<std::int64_t> SupportModel::sorted_support(std::vector<std::int64_t>& idx,
                                                  std::vector<float>& val) {
  idx = S_;
  std::sort(idx.begin(), idx.end());
  const std::int64_t k = static_cast<std::int64_t>(idx.size());
  val.assign(static_cast<std::size_t>(k), 0.0f);
  if (k == 0) return {};
  auto idx_dev = be_.alloc_i64(k);
  be_.to_device(idx_dev.data(), idx.data(), k * 8);
  return idx_dev;
}

void SupportModel::solution(std::vector<std::int64_t>& idx, std::vector<float>& val) {
  auto idx_dev = sorted_support(idx, val);
  const std::int64_t k = static_cast<std::int64_t>(idx.size());
  if (k == 0) return;
  auto x = be_.alloc_f32(k);
  {  // the exact backsolve: the n-space residual is only accurate enough to rank moves
    backsolve(be_, pb_, idx_dev.data(), k, x.data(), threads_);
    be_.to_host(val.data(), x.data(), k * 4);
  }
}

void SupportModel::estimate(std::vector<std::int64_t>& idx, std::vector<float>& val) {
  auto idx_dev = sorted_support(idx, val);
  const std::int64_t k = static_cast<std::int64_t>(idx.size());
  if (k == 0) return;
  auto out = be_.alloc_f32(k);
  std::vector<float> e32(e_.begin(), e_.end());
  be_.to_device(e32_dev_.data(), e32.data(), n_ * 4);
  be_.atr_subset(pb_.A, e32_dev_.data(), idx_dev.data(), k, out.data());
  be_.to_host(val.data(), out.data(), k * 4);
  for (std::int64_t t = 0; t < k; ++t) {
    const std::int64_t j = idx[t];
    const double a = alpha_.empty() ? 0.0 : alpha_[j];
    val[t] = static_cast<float>(wbar_[j] + (val[t] - a) / lam_);
  }
}

}  // namespace chita
