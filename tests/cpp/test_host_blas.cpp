// The float64 vector primitives against plain loops, on every length up to past the
// 16-lane blocking (so every tail is exercised).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "host_blas.h"

namespace chita {
namespace {

std::vector<double> random_vector(std::int64_t m, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> normal;
  std::vector<double> v(static_cast<std::size_t>(m));
  for (auto& x : v) x = normal(gen) * std::exp(normal(gen));  // heavy-tailed magnitudes
  return v;
}

TEST(HostBlas, DotMatchesLongDoubleSum) {
  for (std::int64_t m = 0; m <= 70; ++m) {
    const auto x = random_vector(m, 1 + m), y = random_vector(m, 100 + m);
    long double want = 0, mag = 0;
    for (std::int64_t t = 0; t < m; ++t) want += (long double)x[t] * y[t], mag += std::fabs(x[t] * y[t]);
    EXPECT_NEAR(blas::dot(x.data(), y.data(), m), (double)want, 1e-15 * (double)mag + 1e-300) << m;
  }
}

TEST(HostBlas, AxpyAndRotationMatchPlainLoops) {
  for (std::int64_t m : {0, 1, 3, 4, 17, 64, 101}) {
    auto x = random_vector(m, 7), y = random_vector(m, 8);
    auto y_want = y;
    for (std::int64_t t = 0; t < m; ++t) y_want[t] += -0.75 * x[t];
    blas::axpy(-0.75, x.data(), y.data(), m);
    for (std::int64_t t = 0; t < m; ++t) EXPECT_NEAR(y[t], y_want[t], 1e-14 * (1 + std::fabs(y_want[t])));
    for (double sign : {1.0, -1.0}) {
      auto col = random_vector(m, 9), v = random_vector(m, 10);
      auto col_want = col, v_want = v;
      const double cs = 1.3, sn = 0.4;
      for (std::int64_t i = 0; i < m; ++i) {
        col_want[i] = (col_want[i] + sign * sn * v_want[i]) / cs;
        v_want[i] = cs * v_want[i] - sn * col_want[i];
      }
      blas::rotate_column(col.data(), v.data(), m, sign, cs, sn);
      for (std::int64_t i = 0; i < m; ++i) {
        EXPECT_NEAR(col[i], col_want[i], 1e-14 * (1 + std::fabs(col_want[i])));
        EXPECT_NEAR(v[i], v_want[i], 1e-14 * (1 + std::fabs(v_want[i])));
      }
    }
  }
}

}  // namespace
}  // namespace chita

namespace chita {
namespace {

TEST(HostBlas, Dot2x4MatchesSingleDots) {
  for (std::int64_t m : {0, 1, 3, 4, 7, 128, 131}) {
    std::vector<std::vector<double>> v;
    for (unsigned s = 0; s < 6; ++s) v.push_back(random_vector(m, 50 + s + 7 * m));
    const double* y[4] = {v[2].data(), v[3].data(), v[4].data(), v[5].data()};
    double out[8];
    blas::dot_2x4(v[0].data(), v[1].data(), y, m, out);
    for (int a = 0; a < 2; ++a)
      for (int b = 0; b < 4; ++b) {
        long double want = 0, mag = 0;
        for (std::int64_t t = 0; t < m; ++t)
          want += (long double)v[a][t] * y[b][t], mag += std::fabs(v[a][t] * y[b][t]);
        EXPECT_NEAR(out[4 * a + b], (double)want, 1e-15 * (double)mag + 1e-300) << m;
      }
  }
}

}  // namespace
}  // namespace chita
