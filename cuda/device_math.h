// Logic shared by the CUDA kernels and the host: index math, radix-select digits, top-k
// compaction positions, and the fixed partition/order of deterministic reductions.
//
// Every function here is __host__ __device__ under nvcc and plain inline C++ otherwise, so
// tests/cpp/test_cuda_shared_logic.cpp checks on the CPU exactly what the kernels execute.
// No CUDA headers, no CUDA types: includable from any C++17 translation unit.
#pragma once
#include <cstdint>
#include <cstring>  // std::memcpy (host bit casts)

#if defined(__CUDACC__)
#define CHITA_HD __host__ __device__ __forceinline__
#else
#define CHITA_HD inline
#endif

namespace chita::cuda_math {

// ---- integers ----------------------------------------------------------------------------
CHITA_HD std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }
CHITA_HD std::int64_t min64(std::int64_t a, std::int64_t b) { return a < b ? a : b; }
CHITA_HD std::int64_t max64(std::int64_t a, std::int64_t b) { return a > b ? a : b; }
CHITA_HD std::int64_t clamp64(std::int64_t v, std::int64_t lo, std::int64_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}
// Smallest power of two >= v (v >= 1; returns 1 for v <= 1).
CHITA_HD std::int64_t next_pow2(std::int64_t v) {
  std::int64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

// ---- float bits --------------------------------------------------------------------------
CHITA_HD std::uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}
CHITA_HD float bits_float(std::uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}
// bfloat16 storage: the upper 16 bits of an IEEE float32.
CHITA_HD float bf16_bits_to_float(std::uint16_t h) {
  return bits_float(static_cast<std::uint32_t>(h) << 16);
}

// Radix-select key of |x|: for non-negative IEEE floats the unsigned order of the bit
// patterns is the numeric order, so clearing the sign bit gives a key whose unsigned order
// is the order of |x|. -0 and +0 share key 0 (a tie, broken by index); NaN ranks above +inf.
CHITA_HD std::uint32_t abs_key(float x) { return float_bits(x) & 0x7fffffffu; }

// ---- radix select (MSB first, 8-bit digits, 4 passes) ------------------------------------
constexpr int kRadixBits = 8;
constexpr int kRadixBins = 1 << kRadixBits;   // 256
constexpr int kRadixPasses = 32 / kRadixBits;  // 4

// The digit of `key` examined in pass `pass` (0 = most significant).
CHITA_HD std::uint32_t radix_digit(std::uint32_t key, int pass) {
  return (key >> (32 - kRadixBits * (pass + 1))) & (kRadixBins - 1);
}
// Mask of the bits fixed before pass `pass` (0 before pass 0, all ones after pass 3).
CHITA_HD std::uint32_t radix_prefix_mask(int pass) {
  return pass <= 0 ? 0u : (pass >= kRadixPasses ? 0xffffffffu : ~0u << (32 - kRadixBits * pass));
}
// `prefix` with digit `d` placed at pass `pass`.
CHITA_HD std::uint32_t radix_set_digit(std::uint32_t prefix, int pass, std::uint32_t d) {
  return prefix | (d << (32 - kRadixBits * (pass + 1)));
}

// Given the histogram of the current digit over the keys still in play and the rank
// `k_rem` (1-based, counted from the largest) of the wanted key among them, returns the
// digit that holds it and sets *k_rem_out to its rank among the keys with that digit.
// Scans from the largest digit down. Precondition: 1 <= k_rem <= sum(hist).
CHITA_HD std::uint32_t radix_select_digit(const unsigned long long* hist,
                                          unsigned long long k_rem,
                                          unsigned long long* k_rem_out) {
  unsigned long long above = 0;
  for (int d = kRadixBins - 1; d > 0; --d) {
    if (above + hist[d] >= k_rem) {
      *k_rem_out = k_rem - above;
      return static_cast<std::uint32_t>(d);
    }
    above += hist[d];
  }
  *k_rem_out = k_rem - above;
  return 0;
}

// ---- top-k compaction in index order -------------------------------------------------------
// After the radix passes the k-th largest key is T, `need` keys equal to T are taken (the
// ones with the smallest indices) and every key > T is taken. Walking indices in order with
// gt_before / eq_before = how many keys > T / == T precede j, element j is selected iff
// key > T, or key == T and eq_before < need; it goes to position gt_before +
// min(eq_before, need). Output is therefore sorted by index with no sort at all.
CHITA_HD bool topk_selected(std::uint32_t key, std::uint32_t T, std::int64_t eq_before,
                            std::int64_t need) {
  return key > T || (key == T && eq_before < need);
}
CHITA_HD std::int64_t topk_position(std::int64_t gt_before, std::int64_t eq_before,
                                    std::int64_t need) {
  return gt_before + min64(eq_before, need);
}

// ---- deterministic reductions ----------------------------------------------------------------
// Two phases, both independent of the device (so results are bitwise reproducible across
// GPUs for a given m): block b owns the contiguous range block_range(b, ...); thread t sums
// begin+t, begin+t+kReduceThreads, ... sequentially; the block's kReduceThreads values are
// combined by the halving tree of tree_reduce; a single block then reduces the partials the
// same way (thread t takes partials t, t+kReduceThreads, ...).
constexpr int kReduceThreads = 256;
constexpr std::int64_t kReduceMaxBlocks = 1024;
constexpr std::int64_t kReduceMinPerBlock = 4096;

CHITA_HD std::int64_t reduce_blocks(std::int64_t m) {
  return clamp64(ceil_div(m, kReduceMinPerBlock), 1, kReduceMaxBlocks);
}
CHITA_HD std::int64_t reduce_chunk(std::int64_t m, std::int64_t blocks) {
  return max64(ceil_div(m, blocks), 1);
}
struct Range {
  std::int64_t begin, end;
};
CHITA_HD Range block_range(std::int64_t b, std::int64_t m, std::int64_t chunk) {
  const std::int64_t begin = min64(b * chunk, m);
  return Range{begin, min64(begin + chunk, m)};
}

struct SumOp {
  CHITA_HD static double identity() { return 0.0; }
  CHITA_HD static double combine(double a, double b) { return a + b; }
};
struct MaxOp {  // NaN-ignoring
  CHITA_HD static double identity() { return 0.0; }  // used for |.|, so 0 is the bottom
  CHITA_HD static double combine(double a, double b) { return b > a ? b : a; }
};
struct MinOp {
  CHITA_HD static double identity() { return __builtin_huge_val(); }
  CHITA_HD static double combine(double a, double b) { return b < a ? b : a; }
};

// One step of the halving tree over `count` (a power of two) values: v[i] = v[i] (+) v[i + s]
// for i < s, with s = count/2, count/4, ..., 1. The kernels run each step in parallel, one
// thread per i; this sequential version fixes and documents the order.
template <typename Op>
CHITA_HD void tree_step(double* v, int i, int s) {
  v[i] = Op::combine(v[i], v[i + s]);
}
template <typename Op>
CHITA_HD double tree_reduce(double* v, int count) {
  for (int s = count / 2; s > 0; s /= 2)
    for (int i = 0; i < s; ++i) tree_step<Op>(v, i, s);
  return v[0];
}

// ---- IHT step-size pieces ---------------------------------------------------------------------
// The step at which coordinate t of the support would fall to the largest outside gradient
// M: |w| / (M + sign(w) g) when w != 0 and the denominator is positive, else +inf.
CHITA_HD double support_change_term(float w, float g, double M) {
  if (w == 0.0f) return __builtin_huge_val();
  const double wd = w, gd = g;
  const double den = M + (wd > 0 ? gd : -gd);
  if (!(den > 0)) return __builtin_huge_val();
  return (wd > 0 ? wd : -wd) / den;
}

// ---- A^T r: aligned 16-byte loads over one column ----------------------------------------------
// A column of n elements of `esize` bytes starting at byte address `addr` is read as
// `head` scalars up to the first 16-byte boundary, `nvec` 16-byte vectors, `tail` scalars.
struct VecSplit {
  std::int64_t head, nvec, tail;
};
CHITA_HD VecSplit split_aligned(std::uint64_t addr, std::int64_t n, int esize) {
  std::int64_t head = static_cast<std::int64_t>(((16 - (addr & 15)) & 15) / esize);
  if (head > n) head = n;
  const std::int64_t per_vec = 16 / esize;
  const std::int64_t nvec = (n - head) / per_vec;
  return VecSplit{head, nvec, n - head - nvec * per_vec};
}
// Lanes that cooperate on one column: enough for about two 16-byte loads each, a power of
// two in [4, 32] (a warp serves 32 / group columns).
CHITA_HD int atr_group_size(std::int64_t n, int esize) {
  const std::int64_t vecs = ceil_div(n * esize, 16);
  return static_cast<int>(clamp64(next_pow2(ceil_div(vecs, 2)), 4, 32));
}

// ---- A x over a column set: row tiles x column splits -------------------------------------------
constexpr int kAxThreads = 256;
// Rows per block: each thread owns 16 bytes of consecutive rows.
CHITA_HD std::int64_t ax_rows_per_block(int esize) { return kAxThreads * (16 / esize); }
// Column splits: enough blocks to fill any current GPU (~2048), at least 16 columns each,
// and a partial buffer of at most 64 MiB (splits x n doubles). Device independent.
CHITA_HD std::int64_t ax_splits(std::int64_t n, std::int64_t k, int esize) {
  const std::int64_t row_tiles = ceil_div(n, ax_rows_per_block(esize));
  std::int64_t s = ceil_div(2048, row_tiles);
  s = min64(s, ceil_div(k, 16));
  s = min64(s, max64((std::int64_t{64} << 20) / (8 * max64(n, 1)), 1));
  return max64(s, 1);
}

// ---- Gram matrices: upper-triangular 64 x 64 tiles, split over the summed dimension ------------
constexpr int kGramTile = 64;
constexpr int kGramStep = 16;  // summed indices staged per shared-memory step
// Number of tile pairs (ta <= tb) for a D x D output.
CHITA_HD std::int64_t gram_pairs(std::int64_t D) {
  const std::int64_t T = ceil_div(D, kGramTile);
  return T * (T + 1) / 2;
}
// The l-th upper-triangular pair, row by row: (0,0), (0,1), ..., (0,T-1), (1,1), ...
CHITA_HD void gram_pair(std::int64_t l, std::int64_t T, std::int64_t* ta, std::int64_t* tb) {
  std::int64_t a = 0, row = T;
  while (l >= row) {
    l -= row;
    ++a;
    --row;
  }
  *ta = a;
  *tb = a + l;
}
// Summed indices per split, a multiple of kGramStep: about 512 blocks in all, >= 256
// summed indices per split, partials of at most 256 MiB (splits x D x D doubles).
CHITA_HD std::int64_t gram_split_len(std::int64_t D, std::int64_t R) {
  std::int64_t s = ceil_div(512, gram_pairs(D));
  s = min64(s, ceil_div(R, 256));
  s = min64(s, max64((std::int64_t{256} << 20) / (8 * max64(D * D, 1)), 1));
  s = max64(s, 1);
  return max64(ceil_div(ceil_div(R, s), kGramStep), 1) * kGramStep;
}
// Number of splits: none of them empty.
CHITA_HD std::int64_t gram_splits(std::int64_t D, std::int64_t R) {
  return max64(ceil_div(R, gram_split_len(D, R)), 1);
}

}  // namespace chita::cuda_math
