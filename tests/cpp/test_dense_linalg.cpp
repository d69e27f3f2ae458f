// Host Cholesky used by the backsolve.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "chita/errors.h"  // InvalidArgument
#include "solvers/dense_linalg.h"

namespace chita {
namespace {

std::vector<double> random_spd(int m, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> normal;
  std::vector<double> B(m * m), A(m * m, 0.0);
  for (auto& v : B) v = normal(gen);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j)
      for (int t = 0; t < m; ++t) A[i * m + j] += B[i * m + t] * B[j * m + t];
  for (int i = 0; i < m; ++i) A[i * m + i] += 0.1;
  return A;
}

TEST(DenseLinalg, CholeskySolveRecoversTheSolution) {
  for (int m : {1, 2, 7, 300}) {
    const auto A = random_spd(m, 42 + m);
    std::vector<double> x(m), rhs(m, 0.0);
    for (int i = 0; i < m; ++i) x[i] = 0.5 * i - 1.0;
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) rhs[i] += A[i * m + j] * x[j];
    auto L = A;
    ASSERT_TRUE(cholesky(L, m, 2));
    cholesky_solve(L, m, rhs);
    for (int i = 0; i < m; ++i) EXPECT_NEAR(rhs[i], x[i], 1e-8 * (1 + std::abs(x[i])));
  }
}

TEST(DenseLinalg, RejectsIndefiniteAndJitterRescuesSemidefinite) {
  std::vector<double> indefinite{1.0, 2.0, 2.0, 1.0};
  EXPECT_FALSE(cholesky(indefinite, 2, 1));
  std::vector<double> singular{1.0, 1.0, 1.0, 1.0};  // rank 1
  const double jitter = cholesky_with_jitter(singular, 2, 1);
  EXPECT_GT(jitter, 0.0);
  EXPECT_LT(jitter, 1e-3);
}

TEST(DenseLinalg, NonFiniteMatrixIsAUserErrorNamingTheCauses) {
  std::vector<double> with_nan{1.0, 0.0, 0.0, std::nan("")};
  try {
    cholesky_with_jitter(with_nan, 2, 1);
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("NaN or Inf"), std::string::npos) << msg;
    EXPECT_NE(msg.find("check_finite=True"), std::string::npos) << msg;
    EXPECT_NE(msg.find("pass lam > 0"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace chita
