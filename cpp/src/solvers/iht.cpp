// iht: iterative hard thresholding with CHITA's problem-aware step sizes, finished by a
// backsolve on the final support. One full pass over A (the gradient) per iteration;
// everything else touches the k support columns or O(p) vectors.
#include <cmath>
#include <limits>
#include <utility>

#include "solvers/common.h"
#include "solvers/lipschitz.h"
#include "solvers/methods.h"
#include "solvers/step_size.h"

namespace chita {
namespace {

constexpr double kBeyondChange = 1e-3;  // try tau_chg (1 + eps) so the support does change
// Residuals are updated incrementally (touching only changed columns); recompute them from
// scratch this often so float rounding cannot accumulate.
constexpr int kExactResidualEvery = 8;
// A measured stop: when the support has not changed for kStallWindow iterations and f fell
// by less than kStallDecrease (relative) over them, the remaining steps only crawl towards
// the optimum on this support, which the final backsolve reaches exactly. On real
// gradient matrices IHT otherwise spends every remaining iteration there (max_iter).
constexpr int kStallWindow = 20;
constexpr double kStallDecrease = 1e-3;

class Iht {
 public:
  Iht(Backend& be, const Problem& pb, const SolveOptions& opt)
      : be_(be), pb_(pb), opt_(opt), n_(pb.A.n), p_(pb.A.p), k_(pb.k), eval_(be, pb),
        cur_(be, k_), trial_(be, k_), best_(be, k_),
        w_(be.alloc_f32(p_)), g_(be.alloc_f32(p_)), v_(be.alloc_f32(p_)),
        g_s_(be.alloc_f32(k_)), delta_new_(be.alloc_f32(k_)), delta_old_(be.alloc_f32(k_)),
        mask_(be.alloc_u8(p_)), mask_trial_(be.alloc_u8(p_)),
        r_(be.alloc_f64(n_)), r_trial_(be.alloc_f64(n_)), r_best_(be.alloc_f64(n_)),
        a_g_s_(be.alloc_f64(n_)), a_delta_(be.alloc_f64(n_)), r32_(be.alloc_f32(n_)) {}

  SolveResult run() {
    Stopwatch clock;
    SolveResult res;
    res.method = "iht";
    top_k_of(be_, opt_.w0 ? opt_.w0 : pb_.w_bar, p_, cur_);
    f_ = eval_.evaluate(cur_.idx.data(), cur_.val.data(), k_, r_.data());
    be_.fill(w_.data(), p_, 0.0f);
    be_.fill_u8(mask_.data(), p_, 0);
    be_.fill_u8(mask_trial_.data(), p_, 0);
    sync_dense();
    res.history.push_back(f_);
    Stopwatch loop_clock;
    res.stop_reason = "max_iter";
    double f_window = f_;  // f when the support last changed
    for (int it = 0; it < opt_.max_iter; ++it) {
      if (opt_.time_limit > 0 && clock.seconds() > opt_.time_limit) {
        res.stop_reason = "time_limit";
        break;
      }
      const double f_old = f_;
      const int changes_before = res.steps_chg + res.steps_lip;
      if (!step(res)) {  // no step decreases f: a fixed point of the IHT map
        res.converged = true;
        res.stop_reason = "fixed_point";
        break;
      }
      if (res.steps_chg + res.steps_lip != changes_before) {
        stable_steps_ = 0;
        f_window = f_;
      } else if (++stable_steps_ >= kStallWindow) {
        if (relative_decrease(f_window, f_) < kStallDecrease) {
          ++res.iterations;
          res.history.push_back(f_);
          res.converged = true;
          res.stop_reason = "support_stable";
          break;
        }
        stable_steps_ = 0;
        f_window = f_;
      }
      ++res.iterations;
      if (res.iterations % kExactResidualEvery == 0)
        f_ = eval_.evaluate(cur_.idx.data(), cur_.val.data(), k_, r_.data());
      res.history.push_back(f_);
      if (relative_decrease(f_old, f_) < opt_.tol) {
        res.converged = true;
        res.stop_reason = "tol";
        break;
      }
    }
    res.iteration_seconds = loop_clock.seconds();
    // Backsolve on the final support: optimal for that support, so never worse.
    backsolve(be_, pb_, cur_.idx.data(), k_, best_.val.data(), opt_.threads);
    const double f_bso = eval_.evaluate(cur_.idx.data(), best_.val.data(), k_, r_best_.data());
    if (f_bso <= f_) {
      std::swap(cur_.val, best_.val);
      f_ = f_bso;
    }
    finish_result(be_, pb_, cur_, f_, res);
    res.seconds = clock.seconds();
    return res;
  }

 private:
  // g = -A^T r + lam (w - w_bar) + alpha, the full gradient; g_S and A g_S with it.
  void gradient_on_support() {
    be_.f64_to_f32(r_.data(), r32_.data(), n_);
    GradientTerms terms;
    terms.lam = static_cast<float>(pb_.lam);
    terms.w = w_.data();
    terms.w_bar = pb_.w_bar;
    terms.alpha = pb_.alpha;
    be_.gradient_on_support(pb_.A, r32_.data(), terms, cur_.idx.data(), k_, g_.data(),
                            g_s_.data(), a_g_s_.data());
  }

  // f at H_k(w - tau g); the candidate lands in trial_ / r_trial_. With T the new support
  // and v = w - tau g: A v_T = A w_S - tau A g_S + A delta, where delta = v on T \ S and
  // -v on S \ T, so only the columns that change are touched (A g_S is already known).
  double evaluate_trial(double tau) {
    be_.axpby(1.0f, w_.data(), static_cast<float>(-tau), g_.data(), v_.data(), p_);
    top_k_of(be_, v_.data(), p_, trial_);
    const std::int64_t* T = trial_.idx.data();
    const std::int64_t* S = cur_.idx.data();
    be_.axpby(1.0f, trial_.val.data(), 0.0f, trial_.val.data(), delta_new_.data(), k_);
    be_.scale_unmarked(1.0f, T, k_, mask_.data(), delta_new_.data());
    be_.scatter_u8(1, T, k_, mask_trial_.data());
    be_.gather(v_.data(), S, k_, delta_old_.data());
    be_.scale_unmarked(-1.0f, S, k_, mask_trial_.data(), delta_old_.data());
    be_.scatter_u8(0, T, k_, mask_trial_.data());
    double* r = r_trial_.data();
    be_.axpby_f64(1.0, r_.data(), tau, a_g_s_.data(), r, n_);  // r + tau A g_S
    be_.ax_sparse(pb_.A, T, delta_new_.data(), k_, a_delta_.data());
    be_.axpby_f64(1.0, r, -1.0, a_delta_.data(), r, n_);
    be_.ax_sparse(pb_.A, S, delta_old_.data(), k_, a_delta_.data());
    be_.axpby_f64(1.0, r, -1.0, a_delta_.data(), r, n_);
    return eval_.from_residual(T, trial_.val.data(), k_, r);
  }

  void keep_trial_as_best() {
    std::swap(trial_.idx, best_.idx);
    std::swap(trial_.val, best_.val);
    std::swap(r_trial_, r_best_);
  }

  // Support-changing steps: tau_chg (1 + eps), then doubling while f keeps decreasing.
  // Returns the best f found (best_ holds it), or +inf if no trial was made.
  double support_changing_trials(double tau_chg) {
    double best = std::numeric_limits<double>::infinity();
    if (!std::isfinite(tau_chg)) return best;
    double tau = tau_chg * (1.0 + kBeyondChange);
    for (int d = 0; d <= opt_.max_doublings; ++d, tau *= 2.0) {
      const double f = evaluate_trial(tau);
      if (!(f < best)) break;
      best = f;
      keep_trial_as_best();
    }
    return best;
  }

  // One IHT iteration. Returns false if no candidate step decreases f.
  bool step(SolveResult& res) {
    gradient_on_support();
    const double g_s_sq = be_.dot(g_s_.data(), g_s_.data(), k_);
    const double a_g_s_sq = be_.dot_f64(a_g_s_.data(), a_g_s_.data(), n_);
    const double tau_opt = tau_optimal(g_s_sq, a_g_s_sq, pb_.lam);
    const double M = be_.max_abs_unmasked(g_.data(), mask_.data(), p_);
    const double tau_chg =
        M > 0 ? be_.support_change_step(cur_.val.data(), g_s_.data(), k_, M)
              : std::numeric_limits<double>::infinity();

    // 1. tau_opt keeps the support: an exact line minimisation, no trial needed.
    if (tau_opt > 0 && tau_opt < tau_chg) return take_support_step(tau_opt, res);

    // 2. The support must change to do better: compare trials with the on-support step.
    const double f_opt = f_ - decrease_at_optimal(g_s_sq, a_g_s_sq, pb_.lam);
    double f_trial = support_changing_trials(tau_chg);
    // 3. Nothing else applies: the 1/L step.
    bool lipschitz_step = false;
    if (!(f_trial < f_) && tau_opt == 0) {
      if (L_ == 0) L_ = lipschitz_constant(be_, pb_, opt_.power_iters);
      const double f = evaluate_trial(1.0 / L_);
      if (f < f_) {
        keep_trial_as_best();
        f_trial = f;
        lipschitz_step = true;
      }
    }
    if (f_trial < f_ && f_trial <= f_opt) {
      adopt_best(f_trial);
      ++(lipschitz_step ? res.steps_lip : res.steps_chg);
      return true;
    }
    return tau_opt > 0 && take_support_step(tau_opt, res);
  }

  bool take_support_step(double tau, SolveResult& res) {
    // x <- x - tau g_S on the same support, r <- r + tau A g_S.
    be_.axpby(1.0f, cur_.val.data(), static_cast<float>(-tau), g_s_.data(), trial_.val.data(), k_);
    be_.axpby_f64(1.0, r_.data(), tau, a_g_s_.data(), r_trial_.data(), n_);
    const double f = eval_.from_residual(cur_.idx.data(), trial_.val.data(), k_, r_trial_.data());
    if (!(f < f_)) return false;  // rounding ate the decrease: converged
    std::swap(cur_.val, trial_.val);
    std::swap(r_, r_trial_);
    f_ = f;
    sync_dense();
    ++res.steps_opt;
    return true;
  }

  void adopt_best(double f) {
    be_.scatter_u8(0, cur_.idx.data(), k_, mask_.data());
    be_.fill(w_.data(), p_, 0.0f);
    std::swap(cur_.idx, best_.idx);
    std::swap(cur_.val, best_.val);
    std::swap(r_, r_best_);
    f_ = f;
    sync_dense();
  }

  // w (dense) and the support mask from cur_.
  void sync_dense() {
    be_.scatter(cur_.val.data(), cur_.idx.data(), k_, w_.data());
    be_.scatter_u8(1, cur_.idx.data(), k_, mask_.data());
  }

  Backend& be_;
  const Problem& pb_;
  const SolveOptions& opt_;
  const std::int64_t n_, p_, k_;
  ObjectiveEvaluator eval_;
  SparseIterate cur_, trial_, best_;
  Buffer<float> w_, g_, v_, g_s_, delta_new_, delta_old_;
  Buffer<std::uint8_t> mask_, mask_trial_;
  Buffer<double> r_, r_trial_, r_best_, a_g_s_, a_delta_;
  Buffer<float> r32_;
  double f_ = 0.0;
  double L_ = 0.0;
  int stable_steps_ = 0;  // iterations since the support last changed
};

}  // namespace

SolveResult solve_iht(Backend& be, const Problem& pb, const SolveOptions& opt) {
  Iht iht(be, pb, opt);
  return iht.run();
}

}  // namespace chita
