// CHITA's step-size rules (solvers/step_size.h) against hand-derived values.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "solvers/step_size.h"

namespace chita {
namespace {

TEST(StepSize, OptimalTauMinimisesTheQuadraticAlongTheDirection) {
  // f(tau) = f0 - tau gg + tau^2/2 (agg + lam gg); minimum at gg / (agg + lam gg).
  const double gg = 4.0, agg = 10.0, lam = 0.5;
  const double tau = tau_optimal(gg, agg, lam);
  EXPECT_DOUBLE_EQ(tau, 4.0 / 12.0);
  auto f = [&](double t) { return -t * gg + 0.5 * t * t * (agg + lam * gg); };
  EXPECT_LT(f(tau), f(tau * 1.01));
  EXPECT_LT(f(tau), f(tau * 0.99));
  EXPECT_DOUBLE_EQ(-f(tau), decrease_at_optimal(gg, agg, lam));
}

TEST(StepSize, OptimalTauIsZeroWithoutADirection) {
  EXPECT_EQ(tau_optimal(0.0, 0.0, 1.0), 0.0);
  EXPECT_EQ(decrease_at_optimal(0.0, 3.0, 1.0), 0.0);
}

TEST(StepSize, SupportChangeTauIsWhereTheEntryMeetsTheThreshold) {
  const double w = 2.0, g = 1.0, M = 3.0;
  const double tau = support_change_tau(w, g, M);
  EXPECT_DOUBLE_EQ(std::fabs(w - tau * g), M * tau);
  EXPECT_DOUBLE_EQ(support_change_tau(-w, -g, M), tau);  // sign symmetric
}

TEST(StepSize, SupportChangeTauInfiniteWhenTheEntryGrows) {
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(support_change_tau(2.0, -5.0, 3.0), inf);  // moving away from zero faster than M
  EXPECT_EQ(support_change_tau(0.0, 1.0, 3.0), inf);
}

TEST(StepSize, RelativeDecrease) {
  EXPECT_DOUBLE_EQ(relative_decrease(10.0, 9.0), 0.1);
  EXPECT_DOUBLE_EQ(relative_decrease(-10.0, -11.0), 0.1);
  EXPECT_GT(relative_decrease(0.0, -1.0), 0.0);
}

}  // namespace
}  // namespace chita
