// CPU kernels against naive double loops, and thread-count independence.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "chita/backend.h"
#include "cpu/kernels.h"   // the kernels with an uncapped thread count
#include "cpu/parallel.h"  // ordered_sum

namespace chita {
namespace {

struct Instance {
  std::int64_t n = 33, p = 20000;  // 2.6 MB: large enough for several threads
  std::vector<float> a, r;
  MatrixView A;
  Instance() {
    std::mt19937 gen(7);
    std::normal_distribution<float> normal;
    a.resize(n * p);
    r.resize(n);
    for (auto& v : a) v = normal(gen);
    for (auto& v : r) v = normal(gen);
    A.data = a.data();
    A.n = n;
    A.p = p;
  }
};

TEST(CpuKernels, AtrMatchesNaiveDoubleLoop) {
  Instance in;
  auto be = make_backend(DeviceRef{}, 2);
  std::vector<float> out(in.p);
  be->atr(in.A, in.r.data(), out.data());
  for (std::int64_t j = 0; j < in.p; j += 97) {
    double s = 0;
    for (std::int64_t i = 0; i < in.n; ++i) s += double(in.a[j * in.n + i]) * in.r[i];
    EXPECT_NEAR(out[j], s, 1e-4);
  }
}

TEST(CpuKernels, AxSparseIsThreadCountIndependent) {
  Instance in;
  std::vector<std::int64_t> idx(5000);  // 660 KB of columns: two threads' worth
  std::iota(idx.begin(), idx.end(), 0);
  for (auto& v : idx) v *= 4;
  std::vector<float> x(idx.size(), 0.25f);
  std::vector<double> one(in.n), two(in.n);
  make_backend(DeviceRef{}, 1)->ax_sparse(in.A, idx.data(), x.data(), idx.size(), one.data());
  make_backend(DeviceRef{}, 2)->ax_sparse(in.A, idx.data(), x.data(), idx.size(), two.data());
  EXPECT_EQ(one, two);
}

TEST(CpuKernels, TopkMatchesSortWithIndexTieBreak) {
  std::mt19937 gen(3);
  std::uniform_int_distribution<int> small(-4, 4);
  std::vector<float> x(400000);  // several ranges at 2-5 threads: ties cross range edges
  for (auto& v : x) v = 0.5f * small(gen);  // many ties, zeros of both signs
  for (auto [k, threads] : {std::pair<std::int64_t, int>{1, 2}, {10, 5}, {5000, 2},
                            {170000, 5}, {399999, 3}, {250000, 1}}) {
    std::vector<std::int64_t> order(x.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](auto a, auto b) { return std::abs(x[a]) > std::abs(x[b]); });
    order.resize(k);
    std::sort(order.begin(), order.end());
    std::vector<std::int64_t> got(k);
    cpu::topk_abs(x.data(), x.size(), k, got.data(), threads);  // a backend caps threads
    EXPECT_EQ(got, order) << "k=" << k << " threads=" << threads;
  }
}

// Thread counts above this machine's CPUs too (the kernels take the count as given; only
// the backend caps it): partials are indexed by chunk, so every result is bit-identical.
TEST(CpuKernels, ReductionsDoNotDependOnThreadCount) {
  Instance in;
  std::vector<std::int64_t> idx;
  for (std::int64_t j = 0; j < in.p; j += 3) idx.push_back(j);
  const auto k = static_cast<std::int64_t>(idx.size());
  std::vector<float> x(in.p);
  std::mt19937 gen(11);
  std::normal_distribution<float> normal;
  for (auto& v : x) v = normal(gen);
  GradientTerms terms;
  terms.lam = 0.5f;
  terms.w = x.data();
  struct Out {
    std::vector<float> atr, g, g_s;
    std::vector<double> ax, ax_dense, a_g_s, gram_rows, gram_cols;
    double sum = 0;
  };
  auto run = [&](int threads) {
    Out o;
    o.atr.resize(in.p), o.g.resize(in.p), o.g_s.resize(k);
    o.ax.resize(in.n), o.ax_dense.resize(in.n), o.a_g_s.resize(in.n);
    o.gram_rows.resize(in.n * in.n), o.gram_cols.resize(200 * 200);
    cpu::atr(in.A, in.r.data(), o.atr.data(), threads);
    cpu::ax(in.A, idx.data(), x.data(), k, o.ax.data(), threads);
    cpu::ax(in.A, nullptr, x.data(), in.p, o.ax_dense.data(), threads);
    cpu::gradient_on_support(in.A, in.r.data(), terms, idx.data(), k, o.g.data(), o.g_s.data(),
                             o.a_g_s.data(), threads);
    cpu::gram_rows(in.A, idx.data(), k, o.gram_rows.data(), threads);
    cpu::gram_cols(in.A, idx.data(), 200, o.gram_cols.data(), threads);
    // A heavy per-item cost, so that the work rule lets every thread in.
    o.sum = cpu::ordered_sum(in.p, threads, 1 << 10, [&](std::int64_t b, std::int64_t e) {
      double s = 0;
      for (std::int64_t j = b; j < e; ++j) s += double(x[j]) * x[j];
      return s;
    });
    return o;
  };
  const Out one = run(1);
  for (int threads : {2, 3, 7}) {
    const Out o = run(threads);
    SCOPED_TRACE(threads);
    EXPECT_EQ(o.atr, one.atr);
    EXPECT_EQ(o.ax, one.ax);
    EXPECT_EQ(o.ax_dense, one.ax_dense);
    EXPECT_EQ(o.g, one.g);
    EXPECT_EQ(o.g_s, one.g_s);
    EXPECT_EQ(o.a_g_s, one.a_g_s);
    EXPECT_EQ(o.gram_rows, one.gram_rows);
    EXPECT_EQ(o.gram_cols, one.gram_cols);
    EXPECT_EQ(o.sum, one.sum);
  }
}

}  // namespace
}  // namespace chita
