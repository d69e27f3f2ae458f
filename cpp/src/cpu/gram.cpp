// Gram matrices for the backsolve: A_S A_S^T (n x n) and A_S^T A_S (k x k), float64.
//
// Both are C = Y Y^T for an m x D matrix Y read from A (gram_rows: Y = A_S, m = n, D = k;
// gram_cols: Y = A_S^T, m = k, D = n), computed the classic way (a symmetric rank-k
// update): D in blocks of kDepth, each block of Y packed once into float64 panels
// (gram_tile.h), then the lower triangle of C in kMacro x kMacro macro tiles, each as
// 12 x 4 register tiles. Macro tiles run in parallel; each entry of C belongs to one tile
// and adds its blocks' partial sums in block order, so results do not depend on the
// thread count (nor on the tile, AVX2 or portable: see gram_tile.h).
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "cpu/element.h"    // F32, BF16, with_element
#include "cpu/gram_tile.h"  // the 12 x 4 tile, the panel format
#include "cpu/kernels.h"
#include "cpu/parallel.h"   // parallel_ranges

namespace chita::cpu {
namespace {

// Reduction block (kGramDepth, gram_tile.h): one column quad's panel (4 x 256 doubles,
// 8 KB) stays in L1 while the rows' panels stream past it from L2.
constexpr std::int64_t kDepth = kGramDepth;
// Macro tile edge (a multiple of 12 and 4): its row and column panels, 2 x 192 KB at full
// depth, stay in a 512 KB L2.
constexpr std::int64_t kMacro = 96;
// Work rule (parallel.h counts bytes of memory traffic): one multiply-add costs about as
// much time as this many bytes streamed.
constexpr double kBytesPerFma = 2.0;

// Y as read from A: Y[r, d] = A.data[pos(row_table, r) * row_stride +
// pos(depth_table, d) * depth_stride], pos(t, x) = t ? t[x] : x. One of the strides is 1.
struct Operand {
  const void* data = nullptr;
  std::int64_t m = 0, depth = 0;
  const std::int64_t* row_table = nullptr;
  std::int64_t row_stride = 1;
  const std::int64_t* depth_table = nullptr;
  std::int64_t depth_stride = 1;
};

inline std::int64_t pos(const std::int64_t* table, std::int64_t x) { return table ? table[x] : x; }

// Packing a block of Y's columns [d0, d0 + kb) into panels (quad q at panel + q * qs), rows
// >= m as zeros. Rows of unit stride (gram_rows of column-major A): kPackGroup depths at a
// time, read down their rows side by side, with software prefetch (16 short column streams
// at once defeat the hardware prefetcher: 3 GB/s without). Writing all quads at each depth
// instead, 8 KB apart, thrashed L1 (2.6 ns per element).
constexpr std::int64_t kPackGroup = 16;
constexpr std::int64_t kPrefetchBytes = 256;  // ahead in each column

template <typename E, bool RowTable>
void pack_depths(const Operand& Y, std::int64_t d0, std::int64_t g0, std::int64_t g1,
                 std::int64_t qs, std::int64_t quads, double* panel) {
  using Stored = typename E::Stored;
  const auto* a = static_cast<const Stored*>(Y.data);
  const auto row = [&](std::int64_t i) { return RowTable ? Y.row_table[i] : i; };
  const Stored* base[kPackGroup];
  const std::int64_t width = g1 - g0;
  for (std::int64_t d = 0; d < width; ++d)
    base[d] = a + pos(Y.depth_table, d0 + g0 + d) * Y.depth_stride;
  constexpr std::int64_t kQuadsPerLine = 64 / (4 * sizeof(Stored));
  constexpr std::int64_t kAhead = kPrefetchBytes / sizeof(Stored);  // rows
  const std::int64_t full = std::min(quads, Y.m / 4);  // quads without padding
  for (std::int64_t q = 0; q < full; ++q) {
    if (!RowTable && q % kQuadsPerLine == 0 && 4 * q + kAhead < Y.m)
      for (std::int64_t d = 0; d < width; ++d)
        __builtin_prefetch(base[d] + 4 * q + kAhead);
    double* out = panel + q * qs + 4 * g0;
    for (std::int64_t d = 0; d < width; ++d)
      for (int r = 0; r < 4; ++r) out[4 * d + r] = E::load(base[d], row(4 * q + r));
  }
  for (std::int64_t q = full; q < quads; ++q) {
    double* out = panel + q * qs + 4 * g0;
    for (std::int64_t d = 0; d < width; ++d)
      for (int r = 0; r < 4; ++r) {
        const std::int64_t i = 4 * q + r;
        out[4 * d + r] = i < Y.m ? E::load(base[d], row(i)) : 0.0;
      }
  }
}

// The depth of unit stride (gram_cols of column-major A): quads [q0, q1), each with its four
// rows read side by side.
template <typename E, bool DepthTable>
void pack_rows(const Operand& Y, std::int64_t d0, std::int64_t kb, std::int64_t qs,
               std::int64_t q0, std::int64_t q1, double* panel) {
  const auto* a = static_cast<const typename E::Stored*>(Y.data);
  const auto depth = [&](std::int64_t d) { return DepthTable ? Y.depth_table[d0 + d] : d0 + d; };
  for (std::int64_t q = q0; q < q1; ++q) {
    double* out = panel + q * qs;
    const typename E::Stored* base[4];
    for (int r = 0; r < 4; ++r)
      base[r] = a + pos(Y.row_table, std::min(4 * q + r, Y.m - 1)) * Y.row_stride;
    if (4 * q + 3 < Y.m) {
      for (std::int64_t d = 0; d < kb; ++d)
        for (int r = 0; r < 4; ++r) out[4 * d + r] = E::load(base[r], depth(d));
    } else {
      for (std::int64_t d = 0; d < kb; ++d)
        for (int r = 0; r < 4; ++r)
          out[4 * d + r] = 4 * q + r < Y.m ? E::load(base[r], depth(d)) : 0.0;
    }
  }
}

// The whole block, in parallel (every panel entry is written by one chunk).
template <typename E>
void pack_block(const Operand& Y, std::int64_t d0, std::int64_t kb, std::int64_t qs,
                std::int64_t quads, double* panel, int threads) {
  const double bytes = static_cast<double>(quads) * 4 * kb * (8 + sizeof(typename E::Stored));
  if (Y.row_stride == 1) {
    parallel_ranges(kb, kPackGroup, threads, bytes, [&](std::int64_t g0, std::int64_t g1) {
      Y.row_table ? pack_depths<E, true>(Y, d0, g0, g1, qs, quads, panel)
                  : pack_depths<E, false>(Y, d0, g0, g1, qs, quads, panel);
    });
  } else {
    parallel_ranges(quads, 4, threads, bytes, [&](std::int64_t q0, std::int64_t q1) {
      Y.depth_table ? pack_rows<E, true>(Y, d0, kb, qs, q0, q1, panel)
                    : pack_rows<E, false>(Y, d0, kb, qs, q0, q1, panel);
    });
  }
}

// 64-byte aligned float64 buffer: quad panels start on cache lines.
struct AlignedBuffer {
  explicit AlignedBuffer(std::int64_t size)
      : storage(static_cast<std::size_t>(size + 8)),
        data(reinterpret_cast<double*>((reinterpret_cast<std::uintptr_t>(storage.data()) + 63) &
                                       ~std::uintptr_t{63})) {}
  std::vector<double> storage;
  double* data;
};

// C's entries (i, j), i >= j, of macro tile (bi, bj), stored at C[j * m + i] (the upper
// triangle: a tile's accumulators are runs of i) += the block's partial sums.
void add_macro_tile(GramTileFn tile, const double* panel, std::int64_t qs, std::int64_t kb,
                    std::int64_t m, std::int64_t bi, std::int64_t bj, double* C) {
  const std::int64_t row_end = std::min(m, (bi + 1) * kMacro);
  const std::int64_t col_end = std::min(m, (bj + 1) * kMacro);
  for (std::int64_t j0 = bj * kMacro; j0 < col_end; j0 += kTileCols) {
    const double* cols = panel + (j0 / 4) * qs;
    // Tiles from the one holding the diagonal entry (j0, j0) down.
    for (std::int64_t i0 = std::max(bi * kMacro, j0 / kTileRows * kTileRows); i0 < row_end;
         i0 += kTileRows) {
      const double* rows = panel + (i0 / 4) * qs;
      if (i0 + kTileRows <= m && j0 + kTileCols <= m) {
        tile(rows, qs, cols, kb, C + j0 * m + i0, m);
        continue;
      }
      double edge[kTileCols * kTileRows] = {};  // past the last row or column of C
      tile(rows, qs, cols, kb, edge, kTileRows);
      for (std::int64_t c = 0; c < kTileCols && j0 + c < m; ++c)
        for (std::int64_t r = 0; r < kTileRows && i0 + r < m; ++r)
          C[(j0 + c) * m + i0 + r] += edge[c * kTileRows + r];
    }
  }
}

// C[i * m + j] = C[j * m + i] for i > j, in 32 x 32 blocks (rows of blocks in parallel).
void mirror_upper_to_lower(double* C, std::int64_t m, int threads) {
  constexpr std::int64_t kB = 32;
  parallel_ranges(m, kB, threads, 16.0 * m * m / 2, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t j0 = 0; j0 < i1; j0 += kB)
      for (std::int64_t i = i0; i < i1; ++i)
        for (std::int64_t j = j0; j < std::min({j0 + kB, i, m}); ++j) C[i * m + j] = C[j * m + i];
  });
}

// C (m x m, row-major) = Y Y^T.
template <typename E>
void gram_impl(const Operand& Y, double* C, int threads) {
  const std::int64_t m = Y.m, D = Y.depth;
  std::fill(C, C + m * m, 0.0);
  if (m == 0 || D == 0) return;
  const GramTileFn tile = gram_tile_for_this_cpu();
  const std::int64_t quads = (m + kTileRows - 1) / kTileRows * (kTileRows / 4);
  const std::int64_t kc = std::min(kDepth, D);
  const std::int64_t qs = 4 * kc;  // doubles from one quad's panel to the next
  AlignedBuffer panel(quads * qs);
  const std::int64_t blocks = (m + kMacro - 1) / kMacro;
  std::vector<std::pair<std::int64_t, std::int64_t>> macro_tiles;  // (bi, bj), bi >= bj
  for (std::int64_t bj = 0; bj < blocks; ++bj)
    for (std::int64_t bi = bj; bi < blocks; ++bi) macro_tiles.emplace_back(bi, bj);
  const auto n_tiles = static_cast<std::int64_t>(macro_tiles.size());
  for (std::int64_t d0 = 0; d0 < D; d0 += kc) {
    const std::int64_t kb = std::min(kc, D - d0);
    pack_block<E>(Y, d0, kb, qs, quads, panel.data, threads);
    const double fmas = 0.5 * static_cast<double>(m) * m * kb;
    parallel_ranges(n_tiles, 1, threads, kBytesPerFma * fmas, [&](std::int64_t t0, std::int64_t t1) {
      for (std::int64_t t = t0; t < t1; ++t)
        add_macro_tile(tile, panel.data, qs, kb, m, macro_tiles[t].first, macro_tiles[t].second, C);
    });
  }
  mirror_upper_to_lower(C, m, threads);
}

}  // namespace

void gram_rows(const MatrixView& A, const std::int64_t* idx, std::int64_t k, double* out,
               int threads) {
  Operand Y;  // Y = A_S: Y[i, t] = A(i, idx[t])
  Y.data = A.data, Y.m = A.n, Y.depth = k, Y.depth_table = idx;
  if (A.layout == Layout::col_major) Y.depth_stride = A.n;
  else Y.row_stride = A.p;
  with_element(A.dtype == DType::bf16, [&](auto e) { gram_impl<decltype(e)>(Y, out, threads); });
}

void gram_cols(const MatrixView& A, const std::int64_t* idx, std::int64_t k, double* out,
               int threads) {
  Operand Y;  // Y = A_S^T: Y[s, i] = A(i, idx[s])
  Y.data = A.data, Y.m = k, Y.depth = A.n, Y.row_table = idx;
  if (A.layout == Layout::col_major) Y.row_stride = A.n;
  else Y.depth_stride = A.p;
  with_element(A.dtype == DType::bf16, [&](auto e) { gram_impl<decltype(e)>(Y, out, threads); });
}

}  // namespace chita::cpu
