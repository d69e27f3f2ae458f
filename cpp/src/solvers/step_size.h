// CHITA's step-size rules for IHT, as plain functions of reduced quantities so that they
// can be tested on their own (tests/cpp/test_step_size.cpp).
#pragma once
#include <cmath>
#include <limits>

namespace chita {

// Exact minimiser of f along -g_S on the support: tau = ||g_S||^2 / (||A g_S||^2 + lam ||g_S||^2).
// Returns 0 when there is nothing to minimise (g_S = 0 or a flat direction).
inline double tau_optimal(double g_s_sq, double a_g_s_sq, double lam) {
  const double denom = a_g_s_sq + lam * g_s_sq;
  return (g_s_sq > 0 && denom > 0) ? g_s_sq / denom : 0.0;
}

// The decrease that step achieves: f(w) - f(w - tau_opt g_S) = ||g_S||^4 / (2 denom).
inline double decrease_at_optimal(double g_s_sq, double a_g_s_sq, double lam) {
  const double denom = a_g_s_sq + lam * g_s_sq;
  return (g_s_sq > 0 && denom > 0) ? g_s_sq * g_s_sq / (2.0 * denom) : 0.0;
}

// One support entry's contribution to tau_chg: the smallest tau > 0 with
// |w - tau g| = M tau, i.e. |w| / (M + sign(w) g) when that denominator is positive.
inline double support_change_tau(double w, double g, double M) {
  if (w == 0.0) return std::numeric_limits<double>::infinity();
  const double denom = M + (w > 0 ? g : -g);
  return denom > 0 ? std::fabs(w) / denom : std::numeric_limits<double>::infinity();
}

// Relative decrease used by the stopping rule.
inline double relative_decrease(double f_old, double f_new) {
  const double scale = std::fabs(f_old) > 1e-30 ? std::fabs(f_old) : 1e-30;
  return (f_old - f_new) / scale;
}

}  // namespace chita
