// The hand-vectorised AVX2 column kernels against naive float64 loops, on column lengths
// that exercise every tail (n not a multiple of 8 or 32), gathered supports and zero
// coefficients. Skipped on CPUs without AVX2 + FMA (the portable loops run there).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/columns_avx2.h"

namespace chita {
namespace {

float bf16_value(std::uint16_t h) {
  std::uint32_t bits = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

struct Columns {
  std::int64_t n, p;
  std::vector<float> a32, r, x;
  std::vector<std::uint16_t> a16;
  std::vector<std::int64_t> idx;
  Columns(std::int64_t n_, std::int64_t p_, unsigned seed) : n(n_), p(p_) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> normal;
    a32.resize(n * p), a16.resize(n * p), r.resize(n), x.resize(p);
    for (std::int64_t i = 0; i < n * p; ++i) {
      a32[i] = normal(gen) * (1 + i % 5);
      std::uint32_t bits;
      const float other = normal(gen);
      std::memcpy(&bits, &other, 4);
      a16[i] = static_cast<std::uint16_t>(bits >> 16);  // a signed bfloat16 value
    }
    for (auto& v : r) v = normal(gen);
    for (std::int64_t j = 0; j < p; ++j) x[j] = (j % 3 == 0) ? 0.0f : normal(gen);
    for (std::int64_t j = p - 1; j >= 0; j -= 3) idx.push_back(j);  // descending gather
  }
  double column_value(bool bf16, std::int64_t col, std::int64_t i) const {
    return bf16 ? bf16_value(a16[col * n + i]) : a32[col * n + i];
  }
};

TEST(ColumnsAvx2, DotProductsMatchFloat64Loops) {
  if (!cpu::avx2::available()) GTEST_SKIP() << "CPU without AVX2 + FMA";
  for (std::int64_t n : {1, 7, 8, 30, 32, 33, 64, 257}) {
    Columns c(n, 300, static_cast<unsigned>(n));
    std::vector<float> out(c.p), out_idx(c.idx.size());
    cpu::avx2::atr_f32(c.a32.data(), n, c.r.data(), nullptr, 0, c.p, out.data());
    cpu::avx2::atr_f32(c.a32.data(), n, c.r.data(), c.idx.data(), 0, c.idx.size(), out_idx.data());
    for (std::int64_t j = 0; j < c.p; ++j) {
      double s = 0, mag = 0;
      for (std::int64_t i = 0; i < n; ++i) s += c.column_value(false, j, i) * c.r[i], mag += std::fabs(c.column_value(false, j, i) * c.r[i]);
      ASSERT_NEAR(out[j], s, 1e-6 * mag + 1e-30) << "n=" << n << " column " << j;
    }
    for (std::size_t t = 0; t < c.idx.size(); ++t) ASSERT_EQ(out_idx[t], out[c.idx[t]]);
    if (n % 2 == 0) {  // bf16 word pairs need an even n
      std::vector<float> r_even(n / 2), r_odd(n / 2), out16(c.p);
      for (std::int64_t i = 0; i < n / 2; ++i) r_even[i] = c.r[2 * i], r_odd[i] = c.r[2 * i + 1];
      cpu::avx2::atr_bf16_pairs(c.a16.data(), n, r_even.data(), r_odd.data(), nullptr, 0, c.p, out16.data());
      for (std::int64_t j = 0; j < c.p; ++j) {
        double s = 0, mag = 0;
        for (std::int64_t i = 0; i < n; ++i) s += c.column_value(true, j, i) * c.r[i], mag += std::fabs(c.column_value(true, j, i) * c.r[i]);
        ASSERT_NEAR(out16[j], s, 1e-6 * mag + 1e-30) << "bf16 n=" << n << " column " << j;
      }
    }
  }
}

TEST(ColumnsAvx2, ScaledColumnSumsMatchFloat64Loops) {
  if (!cpu::avx2::available()) GTEST_SKIP() << "CPU without AVX2 + FMA";
  for (bool bf16 : {false, true}) {
    for (std::int64_t n : {1, 5, 8, 13, 64, 100}) {
      Columns c(n, 203, static_cast<unsigned>(100 + n));
      for (bool gathered : {false, true}) {
        const std::int64_t k = gathered ? static_cast<std::int64_t>(c.idx.size()) : c.p;
        const std::int64_t* idx = gathered ? c.idx.data() : nullptr;
        std::vector<double> acc(n, 0.25), expect(n, 0.25), mag(n, 0.25);
        if (bf16)
          cpu::avx2::axpy_bf16(c.a16.data(), n, idx, c.x.data(), 0, k, acc.data());
        else
          cpu::avx2::axpy_f32(c.a32.data(), n, idx, c.x.data(), 0, k, acc.data());
        for (std::int64_t t = 0; t < k; ++t) {
          const std::int64_t col = gathered ? c.idx[t] : t;
          for (std::int64_t i = 0; i < n; ++i) {
            const double term = static_cast<double>(c.x[t]) * c.column_value(bf16, col, i);
            expect[i] += term, mag[i] += std::fabs(term);
          }
        }
        for (std::int64_t i = 0; i < n; ++i)
          ASSERT_NEAR(acc[i], expect[i], 1e-12 * mag[i]) << "bf16=" << bf16 << " n=" << n;
      }
    }
  }
}

}  // namespace
}  // namespace chita
