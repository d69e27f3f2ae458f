// CPU unit tests of cuda/device_math.h: the index math, radix digits, top-k compaction
// positions and reduction partition/order that the CUDA kernels execute. Runs everywhere
// (no GPU, no CUDA toolkit needed): the header is plain C++ outside nvcc.
#include <gtest/gtest.h>

#include <algorithm>  // std::sort, std::stable_sort
#include <cmath>      // std::fabs, std::isinf
#include <cstdint>
#include <limits>
#include <numeric>  // std::iota
#include <random>
#include <vector>

#include "../../cuda/device_math.h"

namespace cm = chita::cuda_math;
using ull = unsigned long long;

namespace {

// ---- host emulation of the top-k kernels (topk_abs.cu), built from the shared pieces ----
std::vector<std::int64_t> emulate_topk(const std::vector<float>& x, std::int64_t k,
                                       std::int64_t chunk) {
  const std::int64_t m = static_cast<std::int64_t>(x.size());
  std::uint32_t prefix = 0;
  ull k_rem = static_cast<ull>(k);
  for (int pass = 0; pass < cm::kRadixPasses; ++pass) {
    std::vector<ull> hist(cm::kRadixBins, 0);
    const std::uint32_t mask = cm::radix_prefix_mask(pass);
    for (float v : x) {
      const std::uint32_t key = cm::abs_key(v);
      if ((key & mask) == prefix) ++hist[cm::radix_digit(key, pass)];
    }
    ull next = 0;
    const std::uint32_t d = cm::radix_select_digit(hist.data(), k_rem, &next);
    prefix = cm::radix_set_digit(prefix, pass, d);
    k_rem = next;
  }
  const std::uint32_t T = prefix;
  const auto need = static_cast<std::int64_t>(k_rem);
  // count / exclusive scan / write over fixed chunks, as the kernels do
  const std::int64_t nb = cm::ceil_div(m, chunk);
  std::vector<std::int64_t> gt(nb, 0), eq(nb, 0);
  for (std::int64_t i = 0; i < m; ++i) {
    const std::uint32_t key = cm::abs_key(x[i]);
    gt[i / chunk] += key > T;
    eq[i / chunk] += key == T;
  }
  std::vector<std::int64_t> out(k, -1);
  std::int64_t g_off = 0, e_off = 0;
  for (std::int64_t b = 0; b < nb; ++b) {
    std::int64_t g = g_off, e = e_off;
    for (std::int64_t i = b * chunk; i < std::min(m, (b + 1) * chunk); ++i) {
      const std::uint32_t key = cm::abs_key(x[i]);
      if (cm::topk_selected(key, T, e, need)) {
        const std::int64_t pos = cm::topk_position(g, e, need);
        EXPECT_LT(pos, k);
        EXPECT_EQ(out[pos], -1) << "position written twice";
        out[pos] = i;
      }
      g += key > T;
      e += key == T;
    }
    g_off += gt[b];
    e_off += eq[b];
  }
  return out;
}

// Reference: the k largest |x|, ties to the smaller index, sorted ascending.
std::vector<std::int64_t> reference_topk(const std::vector<float>& x, std::int64_t k) {
  std::vector<std::int64_t> order(x.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
    return std::fabs(x[a]) > std::fabs(x[b]);
  });
  order.resize(k);
  std::sort(order.begin(), order.end());
  return order;
}

// Host emulation of the two-phase reduction (block_reduce.cuh) for a sum.
double emulate_reduce_sum(const std::vector<double>& v) {
  const std::int64_t m = static_cast<std::int64_t>(v.size());
  const std::int64_t nb = cm::reduce_blocks(m), chunk = cm::reduce_chunk(m, nb);
  auto block = [](std::vector<double> lanes) {  // kReduceThreads lane values -> tree
    return cm::tree_reduce<cm::SumOp>(lanes.data(), cm::kReduceThreads);
  };
  std::vector<double> partials(nb);
  for (std::int64_t b = 0; b < nb; ++b) {
    std::vector<double> lanes(cm::kReduceThreads, 0.0);
    const cm::Range rg = cm::block_range(b, m, chunk);
    for (std::int64_t i = rg.begin; i < rg.end; ++i)
      lanes[(i - rg.begin) % cm::kReduceThreads] += v[i];
    partials[b] = block(lanes);
  }
  std::vector<double> lanes(cm::kReduceThreads, 0.0);
  for (std::int64_t i = 0; i < nb; ++i) lanes[i % cm::kReduceThreads] += partials[i];
  return block(lanes);
}

}  // namespace

TEST(CudaSharedLogic, IntegerHelpers) {
  EXPECT_EQ(cm::ceil_div(0, 4), 0);
  EXPECT_EQ(cm::ceil_div(1, 4), 1);
  EXPECT_EQ(cm::ceil_div(8, 4), 2);
  EXPECT_EQ(cm::ceil_div(9, 4), 3);
  EXPECT_EQ(cm::next_pow2(1), 1);
  EXPECT_EQ(cm::next_pow2(3), 4);
  EXPECT_EQ(cm::next_pow2(64), 64);
  EXPECT_EQ(cm::next_pow2(65), 128);
  EXPECT_EQ(cm::clamp64(5, 1, 3), 3);
  EXPECT_EQ(cm::clamp64(-5, 1, 3), 1);
}

TEST(CudaSharedLogic, Bf16IsUpperHalfOfFloat32) {
  EXPECT_EQ(cm::bf16_bits_to_float(0x3f80), 1.0f);
  EXPECT_EQ(cm::bf16_bits_to_float(0xc000), -2.0f);
  EXPECT_EQ(cm::bf16_bits_to_float(0x0000), 0.0f);
  EXPECT_TRUE(std::isinf(cm::bf16_bits_to_float(0x7f80)));
}

TEST(CudaSharedLogic, AbsKeyOrdersLikeMagnitude) {
  std::mt19937 rng(1);
  std::vector<float> v = {0.0f, -0.0f, 1e-45f, -1e-45f, 1.0f, -1.0f, 3.5f, -3.5f,
                          std::numeric_limits<float>::max(), std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity(), 1e-38f};
  std::normal_distribution<float> nd(0.0f, 10.0f);
  for (int i = 0; i < 200; ++i) v.push_back(nd(rng));
  for (float a : v)
    for (float b : v) {
      EXPECT_EQ(cm::abs_key(a) < cm::abs_key(b), std::fabs(a) < std::fabs(b)) << a << " " << b;
      EXPECT_EQ(cm::abs_key(a) == cm::abs_key(b), std::fabs(a) == std::fabs(b)) << a << " " << b;
    }
  EXPECT_GT(cm::abs_key(std::numeric_limits<float>::quiet_NaN()),
            cm::abs_key(std::numeric_limits<float>::infinity()));
}

TEST(CudaSharedLogic, RadixDigitsRebuildTheKey) {
  EXPECT_EQ(cm::kRadixPasses * cm::kRadixBits, 32);
  std::mt19937 rng(2);
  for (int trial = 0; trial < 1000; ++trial) {
    const std::uint32_t key = rng();
    std::uint32_t prefix = 0;
    for (int pass = 0; pass < cm::kRadixPasses; ++pass) {
      EXPECT_EQ(key & cm::radix_prefix_mask(pass), prefix);
      const std::uint32_t d = cm::radix_digit(key, pass);
      EXPECT_LT(d, static_cast<std::uint32_t>(cm::kRadixBins));
      prefix = cm::radix_set_digit(prefix, pass, d);
    }
    EXPECT_EQ(prefix, key);
  }
  EXPECT_EQ(cm::radix_digit(0x12345678u, 0), 0x12u);
  EXPECT_EQ(cm::radix_digit(0x12345678u, 3), 0x78u);
  EXPECT_EQ(cm::radix_prefix_mask(0), 0u);
  EXPECT_EQ(cm::radix_prefix_mask(1), 0xff000000u);
  EXPECT_EQ(cm::radix_prefix_mask(3), 0xffffff00u);
  EXPECT_EQ(cm::radix_prefix_mask(4), 0xffffffffu);
}

TEST(CudaSharedLogic, RadixSelectDigitScansFromTheTop) {
  std::vector<ull> hist(cm::kRadixBins, 0);
  hist[200] = 3;
  hist[100] = 5;
  hist[0] = 2;
  ull rem = 0;
  EXPECT_EQ(cm::radix_select_digit(hist.data(), 1, &rem), 200u);
  EXPECT_EQ(rem, 1u);
  EXPECT_EQ(cm::radix_select_digit(hist.data(), 3, &rem), 200u);
  EXPECT_EQ(rem, 3u);
  EXPECT_EQ(cm::radix_select_digit(hist.data(), 4, &rem), 100u);
  EXPECT_EQ(rem, 1u);
  EXPECT_EQ(cm::radix_select_digit(hist.data(), 9, &rem), 0u);
  EXPECT_EQ(rem, 1u);
  EXPECT_EQ(cm::radix_select_digit(hist.data(), 10, &rem), 0u);
  EXPECT_EQ(rem, 2u);
}

TEST(CudaSharedLogic, TopkEmulationMatchesReference) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> small(-3, 3);
  for (std::int64_t m : {1, 2, 7, 100, 1000, 5000}) {
    for (int kind = 0; kind < 4; ++kind) {
      std::vector<float> x(m);
      for (auto& v : x) {
        switch (kind) {
          case 0: v = nd(rng); break;                           // distinct
          case 1: v = static_cast<float>(small(rng)); break;    // many ties, +-
          case 2: v = 0.0f; break;                               // all equal (and -0)
          default: v = (rng() & 1) ? -1e-40f : 1e-40f; break;    // denormal ties
        }
      }
      if (kind == 2 && m > 1) x[m / 2] = -0.0f;
      for (std::int64_t k : {std::int64_t{1}, m / 3 + 1, m / 2 + 1, m}) {
        if (k < 1 || k > m) continue;
        for (std::int64_t chunk : {std::int64_t{7}, std::int64_t{4096}}) {
          EXPECT_EQ(emulate_topk(x, k, chunk), reference_topk(x, k))
              << "m=" << m << " kind=" << kind << " k=" << k << " chunk=" << chunk;
        }
      }
    }
  }
}

TEST(CudaSharedLogic, TopkPositionFormula) {
  // keys > T go after every earlier selected key; keys == T only while eq_before < need.
  EXPECT_TRUE(cm::topk_selected(5, 4, 100, 0));
  EXPECT_TRUE(cm::topk_selected(4, 4, 1, 2));
  EXPECT_FALSE(cm::topk_selected(4, 4, 2, 2));
  EXPECT_FALSE(cm::topk_selected(3, 4, 0, 2));
  EXPECT_EQ(cm::topk_position(3, 1, 2), 4);
  EXPECT_EQ(cm::topk_position(3, 7, 2), 5);
}

TEST(CudaSharedLogic, ReducePartitionCoversEveryElementOnce) {
  for (std::int64_t m : {0, 1, 255, 256, 4095, 4096, 4097, 1000003, 25000000}) {
    const std::int64_t nb = cm::reduce_blocks(m);
    EXPECT_GE(nb, 1);
    EXPECT_LE(nb, cm::kReduceMaxBlocks);
    const std::int64_t chunk = cm::reduce_chunk(m, nb);
    std::int64_t next = 0;
    for (std::int64_t b = 0; b < nb; ++b) {
      const cm::Range r = cm::block_range(b, m, chunk);
      EXPECT_EQ(r.begin, next);
      EXPECT_LE(r.begin, r.end);
      next = r.end;
    }
    EXPECT_EQ(next, m);
  }
}

TEST(CudaSharedLogic, TreeReduceOrderIsFixed) {
  // Halving tree over 8 values: ((v0+v4)+(v2+v6)) + ((v1+v5)+(v3+v7)).
  double v[8] = {1e16, 1.0, -1e16, 1.0, 1.0, 1.0, 1.0, 1.0};
  const double expect = ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
  EXPECT_EQ(cm::tree_reduce<cm::SumOp>(v, 8), expect);
  double mx[4] = {1.0, 5.0, -2.0, 3.0};
  EXPECT_EQ(cm::tree_reduce<cm::MaxOp>(mx, 4), 5.0);
  double mn[4] = {1.0, 5.0, -2.0, 3.0};
  EXPECT_EQ(cm::tree_reduce<cm::MinOp>(mn, 4), -2.0);
  EXPECT_TRUE(std::isinf(cm::MinOp::identity()));
}

TEST(CudaSharedLogic, TwoPhaseSumIsAccurateAndRepeatable) {
  std::mt19937 rng(4);
  std::normal_distribution<double> nd(0.0, 1.0);
  for (std::int64_t m : {0, 1, 300, 70000}) {
    std::vector<double> v(m);
    long double exact = 0;
    for (auto& x : v) {
      x = nd(rng);
      exact += x;
    }
    const double a = emulate_reduce_sum(v), b = emulate_reduce_sum(v);
    EXPECT_EQ(a, b);
    EXPECT_NEAR(a, static_cast<double>(exact), 1e-9 * (1 + std::sqrt(double(m))));
  }
}

TEST(CudaSharedLogic, SupportChangeTerm) {
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(cm::support_change_term(0.0f, 1.0f, 1.0), inf);         // w == 0
  EXPECT_DOUBLE_EQ(cm::support_change_term(2.0f, 1.0f, 1.0), 1.0);  // 2 / (1 + 1)
  EXPECT_DOUBLE_EQ(cm::support_change_term(-2.0f, -1.0f, 1.0), 1.0);  // 2 / (1 + 1)
  EXPECT_DOUBLE_EQ(cm::support_change_term(-2.0f, 0.5f, 1.0), 4.0);   // 2 / (1 - 0.5)
  EXPECT_EQ(cm::support_change_term(2.0f, -1.0f, 1.0), inf);         // denominator 0
  EXPECT_EQ(cm::support_change_term(2.0f, -3.0f, 1.0), inf);         // negative
}

TEST(CudaSharedLogic, AlignedSplitOfAColumn) {
  for (int esize : {2, 4}) {
    const std::int64_t per = 16 / esize;
    for (std::uint64_t off = 0; off < 16; off += esize) {
      for (std::int64_t n : {0, 1, 3, 7, 8, 9, 33, 1000}) {
        const std::uint64_t addr = 4096 + off;
        const cm::VecSplit s = cm::split_aligned(addr, n, esize);
        EXPECT_EQ(s.head + s.nvec * per + s.tail, n);
        EXPECT_GE(s.head, 0);
        EXPECT_LT(s.head, per);
        EXPECT_GE(s.tail, 0);
        EXPECT_LT(s.tail, per);
        if (s.nvec > 0) {
          EXPECT_EQ((addr + s.head * esize) % 16, 0u);
        }
        if (s.head < n) {
          EXPECT_EQ(s.head, static_cast<std::int64_t>(((16 - off) % 16) / esize));
        }
      }
    }
  }
}

TEST(CudaSharedLogic, AtrGroupSize) {
  for (int esize : {2, 4})
    for (std::int64_t n : {0, 1, 16, 64, 128, 1000, 100000}) {
      const int g = cm::atr_group_size(n, esize);
      EXPECT_GE(g, 4);
      EXPECT_LE(g, 32);
      EXPECT_EQ(g & (g - 1), 0);
    }
  EXPECT_EQ(cm::atr_group_size(1000, 4), 32);
  EXPECT_EQ(cm::atr_group_size(128, 4), 16);
}

TEST(CudaSharedLogic, AxSplits) {
  EXPECT_EQ(cm::ax_rows_per_block(4), 1024);
  EXPECT_EQ(cm::ax_rows_per_block(2), 2048);
  for (int esize : {2, 4})
    for (std::int64_t n : {1, 100, 1000, 100000})
      for (std::int64_t k : {1, 15, 1000, 25000000}) {
        const std::int64_t s = cm::ax_splits(n, k, esize);
        EXPECT_GE(s, 1);
        EXPECT_LE(s, 65535);
        EXPECT_LE(s, std::max<std::int64_t>(1, cm::ceil_div(k, 16)));
        if (s > 1) {
          EXPECT_LE(s * n * 8, std::int64_t{64} << 20);
        }
      }
}

TEST(CudaSharedLogic, GramPairsEnumerateTheUpperTriangle) {
  for (std::int64_t D : {1, 64, 65, 200, 1000}) {
    const std::int64_t T = cm::ceil_div(D, cm::kGramTile);
    EXPECT_EQ(cm::gram_pairs(D), T * (T + 1) / 2);
    std::int64_t l = 0;
    for (std::int64_t a = 0; a < T; ++a)
      for (std::int64_t b = a; b < T; ++b, ++l) {
        std::int64_t ta, tb;
        cm::gram_pair(l, T, &ta, &tb);
        EXPECT_EQ(ta, a);
        EXPECT_EQ(tb, b);
      }
  }
}

TEST(CudaSharedLogic, GramSplitsCoverTheSum) {
  for (std::int64_t D : {1, 100, 1000, 5000})
    for (std::int64_t R : {1, 15, 16, 1000, 1000000}) {
      const std::int64_t s = cm::gram_splits(D, R), len = cm::gram_split_len(D, R);
      EXPECT_GE(s, 1);
      EXPECT_LE(s, 65535);
      EXPECT_GT(len, 0);
      EXPECT_EQ(len % cm::kGramStep, 0);
      if (s > 1) {
        EXPECT_LE(s * D * D * 8, std::int64_t{256} << 20);
      }
      EXPECT_GE(s * len, R);
      EXPECT_LT((s - 1) * len, R) << "an empty trailing split";
    }
}
