// CPU kernels against naive double loops, and thread-count independence.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "chita/backend.h"

namespace chita {
namespace {

struct Instance {
  std::int64_t n = 33, p = 5000;
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
  std::vector<std::int64_t> idx(1200);
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
    make_backend(DeviceRef{}, threads)->topk_abs(x.data(), x.size(), k, got.data());
    EXPECT_EQ(got, order) << "k=" << k << " threads=" << threads;
  }
}

}  // namespace
}  // namespace chita
