// The fused IHT gradient pass (CpuBackend::gradient_on_support) against a float64 loop and
// against the unfused default (Backend::gradient_on_support), for both dtypes and layouts,
// with supports that straddle the pass's chunk and block boundaries.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "chita/backend.h"

namespace chita {
namespace {

struct Case {
  std::int64_t n, p;
  std::vector<float> a32, r, w, w_bar, alpha;
  std::vector<std::uint16_t> a16;
  std::vector<float> a32_rows;
  std::vector<std::uint16_t> a16_rows;
  std::vector<std::int64_t> idx;
  Case(std::int64_t n_, std::int64_t p_, unsigned seed) : n(n_), p(p_) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> normal;
    a32.resize(n * p), a16.resize(n * p), a32_rows.resize(n * p), a16_rows.resize(n * p);
    for (std::int64_t j = 0; j < p; ++j)
      for (std::int64_t i = 0; i < n; ++i) {
        const float v = normal(gen) * (1.0f + j % 7);
        std::uint32_t bits;
        std::memcpy(&bits, &v, 4);
        a32[j * n + i] = a32_rows[i * p + j] = v;
        a16[j * n + i] = a16_rows[i * p + j] = static_cast<std::uint16_t>(bits >> 16);
      }
    r.resize(n), w.resize(p), w_bar.resize(p), alpha.resize(p);
    for (auto& v : r) v = normal(gen);
    for (auto& v : w_bar) v = normal(gen);
    for (auto& v : alpha) v = 0.1f * normal(gen);
    // A support with the edges of the 4096-column chunks and of the column blocks in it.
    std::uniform_real_distribution<double> u(0, 1);
    for (std::int64_t j = 0; j < p; ++j)
      if (u(gen) < 0.08 || j == 0 || j == p - 1 || j % 4096 == 0 || j % 4096 == 4095)
        idx.push_back(j);
    for (std::int64_t j = 0; j < p; ++j) w[j] = 0.0f;
    for (std::int64_t j : idx) w[j] = normal(gen);
  }
  MatrixView view(bool bf16, bool rows) const {
    MatrixView A;
    A.data = bf16 ? (rows ? static_cast<const void*>(a16_rows.data()) : a16.data())
                  : (rows ? static_cast<const void*>(a32_rows.data()) : a32.data());
    A.n = n, A.p = p;
    A.dtype = bf16 ? DType::bf16 : DType::f32;
    A.layout = rows ? Layout::row_major : Layout::col_major;
    return A;
  }
  double value(bool bf16, std::int64_t i, std::int64_t j) const {
    return bf16 ? bf16_to_float(a16[j * n + i]) : a32[j * n + i];
  }
};

struct Output {
  std::vector<float> g, g_s;
  std::vector<double> a_g_s;
};

Output run(Backend& be, const Case& c, const MatrixView& A, const GradientTerms& terms,
           bool fused) {
  Output o{std::vector<float>(c.p), std::vector<float>(c.idx.size()), std::vector<double>(c.n)};
  const auto k = static_cast<std::int64_t>(c.idx.size());
  if (fused)
    be.gradient_on_support(A, c.r.data(), terms, c.idx.data(), k, o.g.data(), o.g_s.data(),
                           o.a_g_s.data());
  else
    be.Backend::gradient_on_support(A, c.r.data(), terms, c.idx.data(), k, o.g.data(),
                                    o.g_s.data(), o.a_g_s.data());
  return o;
}

TEST(GradientPass, MatchesFloat64LoopAndUnfusedPath) {
  for (std::int64_t n : {34, 33}) {  // even n takes the bfloat16 word-pair kernels
    const Case c(n, 13000, static_cast<unsigned>(n));
    for (bool bf16 : {false, true})
      for (bool rows : {false, true})
        for (int variant = 0; variant < 3; ++variant) {
          GradientTerms terms;
          terms.lam = variant == 2 ? 0.0f : 0.7f;
          terms.w = c.w.data();
          terms.w_bar = c.w_bar.data();
          terms.alpha = variant == 1 ? c.alpha.data() : nullptr;
          const MatrixView A = c.view(bf16, rows);
          auto be = make_backend(DeviceRef{}, 2);
          const Output fused = run(*be, c, A, terms, true);
          const Output plain = run(*be, c, A, terms, false);
          SCOPED_TRACE(::testing::Message() << "n=" << n << " bf16=" << bf16 << " rows=" << rows
                                            << " variant=" << variant);
          for (std::int64_t j = 0; j < c.p; ++j) {
            double atr = 0, mag = 0;
            for (std::int64_t i = 0; i < n; ++i)
              atr += c.value(bf16, i, j) * c.r[i], mag += std::fabs(c.value(bf16, i, j) * c.r[i]);
            double expect = -atr + terms.lam * (double(c.w[j]) - c.w_bar[j]);
            if (terms.alpha) expect += c.alpha[j];
            ASSERT_NEAR(fused.g[j], expect, 1e-5 * (mag + std::fabs(expect)) + 1e-6) << j;
            ASSERT_NEAR(fused.g[j], plain.g[j], 1e-5 * (mag + std::fabs(expect)) + 1e-6) << j;
          }
          for (std::size_t t = 0; t < c.idx.size(); ++t) ASSERT_EQ(fused.g_s[t], fused.g[c.idx[t]]);
          for (std::int64_t i = 0; i < n; ++i) {
            double expect = 0, mag = 0;
            for (std::size_t t = 0; t < c.idx.size(); ++t) {
              const double term = c.value(bf16, i, c.idx[t]) * fused.g_s[t];
              expect += term, mag += std::fabs(term);
            }
            ASSERT_NEAR(fused.a_g_s[i], expect, 1e-12 * mag) << "row " << i;
          }
        }
  }
}

TEST(GradientPass, DoesNotDependOnThreadCount) {
  const Case c(34, 20000, 5);
  GradientTerms terms;
  terms.lam = 0.3f;
  terms.w = c.w.data();
  terms.w_bar = c.w_bar.data();
  const MatrixView A = c.view(false, false);
  const Output one = run(*make_backend(DeviceRef{}, 1), c, A, terms, true);
  const Output two = run(*make_backend(DeviceRef{}, 2), c, A, terms, true);
  EXPECT_EQ(one.g, two.g);
  EXPECT_EQ(one.a_g_s, two.a_g_s);
}

TEST(GradientPass, EmptySupportGivesZeroProduct) {
  const Case c(8, 5000, 9);
  GradientTerms terms;
  terms.lam = 1.0f;
  terms.w = c.w.data();
  auto be = make_backend(DeviceRef{}, 2);
  std::vector<float> g(c.p);
  std::vector<double> a_g_s(c.n, 42.0);
  be->gradient_on_support(c.view(false, false), c.r.data(), terms, nullptr, 0, g.data(), nullptr,
                          a_g_s.data());
  for (double v : a_g_s) EXPECT_EQ(v, 0.0);
}

}  // namespace
}  // namespace chita
