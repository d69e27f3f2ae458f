// The n-space support model: Cholesky rank-1 updates/downdates, and the model's values
// after adds, swaps (rank-1 and batch paths) against a direct k x k ridge solve.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "chita/backend.h"
#include "chita/problem.h"
#include "solvers/dense_linalg.h"   // cholesky, cholesky_solve
#include "solvers/support_model.h"  // SupportModel, chol_rank1, chol_solve_colmajor

namespace chita {
namespace {

// Column-major lower Cholesky factor of a random SPD m x m matrix, and the matrix.
void random_factor(int m, unsigned seed, std::vector<double>& L, std::vector<double>& A) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> normal;
  std::vector<double> B(m * m);
  for (auto& v : B) v = normal(gen);
  A.assign(m * m, 0.0);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j)
      for (int t = 0; t < m; ++t) A[i * m + j] += B[i * m + t] * B[j * m + t];
  for (int i = 0; i < m; ++i) A[i * m + i] += 0.5;
  std::vector<double> R = A;  // row-major lower
  ASSERT_TRUE(cholesky(R, m, 1));
  L.assign(m * m, 0.0);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c <= r; ++c) L[c * m + r] = R[r * m + c];
}

double max_gap_to(const std::vector<double>& L, const std::vector<double>& A, int m) {
  double gap = 0;
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) {
      double s = 0;
      for (int t = 0; t <= std::min(r, c); ++t) s += L[t * m + r] * L[t * m + c];
      gap = std::max(gap, std::fabs(s - A[r * m + c]) / (1 + std::fabs(A[r * m + c])));
    }
  return gap;
}

TEST(SupportModel, Rank1UpdateAndDowndateMatchTheMatrix) {
  for (int m : {1, 3, 40}) {
    std::vector<double> L, A;
    random_factor(m, 7 + m, L, A);
    std::vector<double> x(m);
    for (int i = 0; i < m; ++i) x[i] = std::sin(1.0 + i);
    std::vector<double> Ax = A;
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < m; ++c) Ax[r * m + c] += x[r] * x[c];
    auto y = x;
    ASSERT_TRUE(chol_rank1(L, m, y, +1.0));
    EXPECT_LT(max_gap_to(L, Ax, m), 1e-10);
    y = x;
    ASSERT_TRUE(chol_rank1(L, m, y, -1.0));  // back to A
    EXPECT_LT(max_gap_to(L, A, m), 1e-10);
    std::vector<double> rhs(m, 1.0), sol = rhs;
    chol_solve_colmajor(L, m, sol);
    for (int r = 0; r < m; ++r) {
      double s = 0;
      for (int c = 0; c < m; ++c) s += A[r * m + c] * sol[c];
      EXPECT_NEAR(s, 1.0, 1e-9);
    }
  }
}

TEST(SupportModel, DowndateThatLosesDefinitenessIsRefused) {
  std::vector<double> L{1.0};  // [1] - [2][2]^T < 0
  std::vector<double> x{2.0};
  EXPECT_FALSE(chol_rank1(L, 1, x, -1.0));
}

// f(S) by the k x k normal equations (the definition), alpha optional.
double direct_value(const std::vector<float>& A, int n, int p, const std::vector<float>& b,
                    const std::vector<float>& wbar, const std::vector<float>* alpha, double lam,
                    const std::vector<std::int64_t>& S) {
  const int k = static_cast<int>(S.size());
  std::vector<double> G(k * k, 0.0), rhs(k, 0.0);
  for (int s = 0; s < k; ++s) {
    for (int t = 0; t < k; ++t)
      for (int i = 0; i < n; ++i) G[s * k + t] += double(A[S[s] * n + i]) * A[S[t] * n + i];
    G[s * k + s] += lam;
    for (int i = 0; i < n; ++i) rhs[s] += double(A[S[s] * n + i]) * b[i];
    rhs[s] += lam * wbar[S[s]] - (alpha ? (*alpha)[S[s]] : 0.0);
  }
  EXPECT_TRUE(cholesky(G, k, 1));
  cholesky_solve(G, k, rhs);
  std::vector<double> w(p, 0.0);
  for (int s = 0; s < k; ++s) w[S[s]] = rhs[s];
  double f = 0;
  for (int i = 0; i < n; ++i) {
    double r = b[i];
    for (int j = 0; j < p; ++j) r -= double(A[j * n + i]) * w[j];
    f += 0.5 * r * r;
  }
  for (int j = 0; j < p; ++j)
    f += 0.5 * lam * (w[j] - wbar[j]) * (w[j] - wbar[j]) + (alpha ? (*alpha)[j] * w[j] : 0.0);
  return f;
}

TEST(SupportModel, ValuesAfterAddsAndSwapsMatchDirectSolves) {
  const int n = 12, p = 60;
  std::mt19937 gen(3);
  std::normal_distribution<float> normal;
  std::vector<float> A(n * p), b(n, 0.0f), wbar(p), alpha(p);
  for (auto& v : A) v = normal(gen);
  for (int j = 0; j < p; ++j) wbar[j] = normal(gen), alpha[j] = 0.1f * normal(gen);
  for (int j = 0; j < p; ++j)
    for (int i = 0; i < n; ++i) b[i] += A[j * n + i] * wbar[j];
  auto be = make_backend(DeviceRef{}, 1);
  for (bool with_alpha : {false, true}) {
    Problem pb;
    pb.A.data = A.data(), pb.A.n = n, pb.A.p = p;  // CPU backend: host pointers
    pb.b = b.data(), pb.w_bar = wbar.data(), pb.alpha = with_alpha ? alpha.data() : nullptr;
    pb.lam = 0.3, pb.k = 20;
    const std::vector<float>* al = with_alpha ? &alpha : nullptr;
    SupportModel model(*be, pb, 1);
    model.reset({3, 1, 4});
    EXPECT_NEAR(model.value(), direct_value(A, n, p, b, wbar, al, pb.lam, {1, 3, 4}), 1e-8);
    model.add({10, 11});  // rank-1 path (2 columns, n = 12)
    std::vector<std::int64_t> S{1, 3, 4, 10, 11};
    EXPECT_NEAR(model.value(), direct_value(A, n, p, b, wbar, al, pb.lam, S), 1e-7);
    // A predicted swap equals the applied one and the direct value.
    const double predicted = model.value_after_swap({3}, {20});
    model.swap({3}, {20});
    S = {1, 4, 10, 11, 20};
    EXPECT_NEAR(predicted, model.value(), 1e-9);
    EXPECT_NEAR(model.value(), direct_value(A, n, p, b, wbar, al, pb.lam, S), 1e-7);
    // Closed-form single swaps (Woodbury, rank 2) against the rank-1 updated factor.
    const std::vector<std::int64_t> drops{1, 4, 20}, adds{0, 2, 25, 59};
    const auto values = model.pair_values(drops, adds);
    ASSERT_EQ(values.size(), drops.size() * adds.size());
    for (std::size_t d = 0; d < drops.size(); ++d)
      for (std::size_t a = 0; a < adds.size(); ++a) {
        const double want = model.value_after_swap({drops[d]}, {adds[a]});
        EXPECT_NEAR(values[d * adds.size() + a], want, 1e-9 * (1 + std::fabs(want)));
      }
    // Batch path: 10 moved columns > 3n/4 (gram of the moved columns + an n x n refactor).
    model.add({30, 31, 32, 33, 34, 35, 36, 37, 38, 39});
    model.add({40, 41, 42, 43, 44});
    const std::vector<std::int64_t> drop{30, 31, 32, 33, 34}, add{50, 51, 52, 53, 54};
    const double batch_predicted = model.value_after_swap(drop, add);
    model.swap(drop, add);
    S = {1, 4, 10, 11, 20, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 50, 51, 52, 53, 54};
    EXPECT_NEAR(batch_predicted, model.value(), 1e-9 * (1 + std::fabs(model.value())));
    const double direct = direct_value(A, n, p, b, wbar, al, pb.lam, S);
    EXPECT_NEAR(model.value(), direct, 1e-7 * (1 + std::fabs(direct)));
    // The n-space weight estimate agrees with the exact backsolve.
    std::vector<std::int64_t> i1, i2;
    std::vector<float> v1, v2;
    model.solution(i1, v1);
    model.estimate(i2, v2);
    ASSERT_EQ(i1, i2);
    for (std::size_t t = 0; t < v1.size(); ++t) EXPECT_NEAR(v1[t], v2[t], 1e-3 * (1 + std::fabs(v1[t])));
  }
}

}  // namespace
}  // namespace chita
