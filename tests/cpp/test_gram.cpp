// The Gram kernels (cpu/gram.cpp) against plain loops: every tail of the 12 x 4 tiles, the
// 96-row macro tiles and the 256-deep blocks, both dtypes and layouts; the documented
// summation order bit for bit; thread counts; exact symmetry; the two tiles agree.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "cpu/columns_avx2.h"  // avx2::available
#include "cpu/gram_tile.h"     // the tiles, kGramDepth
#include "cpu/kernels.h"       // gram_rows, gram_cols

namespace chita {
namespace {

// A random n x p matrix in the requested dtype and layout, heavy-tailed magnitudes; value()
// is the stored element as a double.
struct Matrix {
  std::int64_t n, p;
  bool bf16, row_major;
  std::vector<float> f32;
  std::vector<std::uint16_t> h16;
  Matrix(std::int64_t n_, std::int64_t p_, bool bf16_, bool row_major_, unsigned seed)
      : n(n_), p(p_), bf16(bf16_), row_major(row_major_) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> normal;
    f32.resize(n * p);
    for (auto& v : f32) v = normal(gen) * std::exp(normal(gen));
    if (bf16) {
      h16.resize(n * p);
      for (std::int64_t e = 0; e < n * p; ++e) {
        std::uint32_t bits;
        std::memcpy(&bits, &f32[e], 4);
        h16[e] = static_cast<std::uint16_t>(bits >> 16);
      }
    }
  }
  std::int64_t at(std::int64_t i, std::int64_t j) const { return row_major ? i * p + j : j * n + i; }
  double value(std::int64_t i, std::int64_t j) const {
    return bf16 ? bf16_to_float(h16[at(i, j)]) : f32[at(i, j)];
  }
  MatrixView view() const {
    MatrixView A;
    A.data = bf16 ? static_cast<const void*>(h16.data()) : f32.data();
    A.n = n, A.p = p;
    A.dtype = bf16 ? DType::bf16 : DType::f32;
    A.layout = row_major ? Layout::row_major : Layout::col_major;
    return A;
  }
};

// k distinct columns in random order.
std::vector<std::int64_t> random_support(std::int64_t p, std::int64_t k, unsigned seed) {
  std::vector<std::int64_t> all(p);
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), std::mt19937(seed));
  all.resize(k);
  return all;
}

// Y Y^T in the documented order (gram_tile.h): blocks of kGramDepth summed from zero, added
// in block order. y(r, d) is Y's entry.
template <typename Y>
std::vector<double> blocked_reference(std::int64_t m, std::int64_t depth, Y y) {
  std::vector<double> C(m * m, 0.0);
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < m; ++j)
      for (std::int64_t d0 = 0; d0 < depth; d0 += cpu::kGramDepth) {
        double s = 0.0;
        for (std::int64_t d = d0; d < std::min(depth, d0 + cpu::kGramDepth); ++d)
          s += y(i, d) * y(j, d);
        C[i * m + j] += s;
      }
  return C;
}

struct Case {
  std::int64_t n, k;
};

// Shapes around every blocking edge: 1, tile tails (12 x 4), macro tiles (96), depth
// blocks (256).
const Case kCases[] = {{1, 1},   {1, 300}, {2, 1},    {3, 5},    {4, 4},   {11, 256},
                       {12, 257}, {13, 2}, {37, 100}, {96, 513}, {97, 40}, {121, 600}};

TEST(Gram, RowsAndColsMatchTheBlockedOrderBitForBit) {
  unsigned seed = 1;
  for (const Case c : kCases)
    for (bool bf16 : {false, true})
      for (bool row_major : {false, true}) {
        const std::int64_t p = std::max(c.k, c.n) + 7;
        const Matrix M(c.n, p, bf16, row_major, ++seed);
        SCOPED_TRACE(testing::Message() << "n=" << c.n << " k=" << c.k << " bf16=" << bf16
                                        << " row_major=" << row_major);
        // gram_rows: n x n over k columns; gram_cols: k' x k' over n rows, k' = min(k, 130).
        const auto S = random_support(p, c.k, seed);
        std::vector<double> rows(c.n * c.n, -1.0);
        cpu::gram_rows(M.view(), S.data(), c.k, rows.data(), 2);
        EXPECT_EQ(rows, blocked_reference(c.n, c.k, [&](auto i, auto t) { return M.value(i, S[t]); }));
        const std::int64_t kc = std::min<std::int64_t>(c.k, 130);
        std::vector<double> cols(kc * kc, -1.0);
        cpu::gram_cols(M.view(), S.data(), kc, cols.data(), 2);
        EXPECT_EQ(cols, blocked_reference(kc, c.n, [&](auto s, auto i) { return M.value(i, S[s]); }));
      }
}

// The blocked order is accurate: within (blocks of 256 + their number) roundings of the
// sum of |products| of the exact value (long double here).
TEST(Gram, AccurateToTheFloat64Bound) {
  const Matrix M(53, 3000, false, false, 99);
  const auto S = random_support(3000, 2900, 5);
  std::vector<double> K(53 * 53);
  cpu::gram_rows(M.view(), S.data(), 2900, K.data(), 2);
  const double bound = (cpu::kGramDepth + 2900 / cpu::kGramDepth + 2) * 0x1p-53;
  for (std::int64_t i = 0; i < 53; ++i)
    for (std::int64_t j = 0; j < 53; ++j) {
      long double exact = 0, mag = 0;
      for (std::int64_t t = 0; t < 2900; ++t) {
        const long double u = M.value(i, S[t]), v = M.value(j, S[t]);
        exact += u * v, mag += std::fabs(u * v);
      }
      ASSERT_NEAR(K[i * 53 + j], static_cast<double>(exact), bound * static_cast<double>(mag))
          << i << "," << j;
    }
}

TEST(Gram, ThreadCountsGiveIdenticalSymmetricResults) {
  for (bool bf16 : {false, true}) {
    const Matrix M(200, 900, bf16, false, 3);
    const auto S = random_support(900, 700, 4);
    const auto run = [&](bool rows, int threads) {
      const std::int64_t m = rows ? 200 : 700;
      std::vector<double> out(m * m);
      if (rows) cpu::gram_rows(M.view(), S.data(), 700, out.data(), threads);
      else cpu::gram_cols(M.view(), S.data(), 700, out.data(), threads);
      return out;
    };
    for (bool rows : {true, false}) {
      const auto one = run(rows, 1);
      const std::int64_t m = rows ? 200 : 700;
      for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < i; ++j) ASSERT_EQ(one[i * m + j], one[j * m + i]);
      for (int threads : {2, 3, 7}) EXPECT_EQ(run(rows, threads), one) << rows << " " << threads;
    }
  }
}

TEST(Gram, EmptySupportGivesZeros) {
  const Matrix M(5, 10, false, false, 8);
  std::vector<double> K(25, 1.0);
  cpu::gram_rows(M.view(), nullptr, 0, K.data(), 2);
  EXPECT_EQ(K, std::vector<double>(25, 0.0));
}

// Both tiles against the plain loop in the contract's order, bit for bit, on float32 values
// (whose products are exact in float64).
TEST(GramTile, PortableAndAvx2MatchThePlainLoop) {
  for (std::int64_t kc : {0, 1, 3, 256}) {
    std::mt19937 gen(kc + 1);
    std::normal_distribution<float> normal;
    const std::int64_t qs = 4 * kc + 4;  // a stride that is not 4 kc
    std::vector<double> rows(3 * qs + 4), cols(4 * kc + 4);
    for (auto& v : rows) v = normal(gen) * std::exp(normal(gen));
    for (auto& v : cols) v = normal(gen);
    constexpr std::int64_t ldo = 15;
    std::vector<double> base(4 * ldo);
    for (auto& v : base) v = normal(gen);
    auto want = base;
    for (int c = 0; c < 4; ++c)
      for (int r = 0; r < 12; ++r) {
        double s = 0.0;
        for (std::int64_t d = 0; d < kc; ++d)
          s += rows[(r / 4) * qs + 4 * d + r % 4] * cols[4 * d + c];
        want[c * ldo + r] += s;
      }
    auto got = base;
    cpu::gram_tile_portable(rows.data(), qs, cols.data(), kc, got.data(), ldo);
    EXPECT_EQ(got, want) << "portable kc=" << kc;
    if (!cpu::avx2::available()) continue;
    got = base;
    cpu::avx2::gram_tile(rows.data(), qs, cols.data(), kc, got.data(), ldo);
    EXPECT_EQ(got, want) << "avx2 kc=" << kc;
  }
}

}  // namespace
}  // namespace chita
