// The register-blocked micro-kernel of the Gram matrices (gram.cpp): one 12 x 4 tile of
// Y Y^T over one block of the reduction dimension, from packed float64 panels.
//
// Panel format: Y's rows in groups of four ("quads"); quad q of a block of depth kc is
// kc x 4 doubles, panel[4 d + r] = Y[4 q + r, d0 + d]. A tile reads three consecutive
// quads (rows i0..i0+11, `quad_stride` doubles apart) and one quad (columns j0..j0+3).
#pragma once
#include <cstdint>

namespace chita::cpu {

constexpr std::int64_t kTileRows = 12, kTileCols = 4;

// The reduction dimension is cut into blocks of this many (the last one shorter); entry
// (i, j) of a Gram matrix is ((0 + s_0) + s_1) + ..., s_b the block's products summed from
// zero in order. That order is the whole contract: it does not depend on threads or tiles.
constexpr std::int64_t kGramDepth = 256;

// out[c * ldo + r] += sum over d < kc, in order d = 0, 1, ..., of a(r, d) * b(c, d), for
// r < 12, c < 4, where a(r, d) = rows[(r / 4) * quad_stride + 4 d + r % 4] and
// b(c, d) = cols[4 d + c]. Each entry is summed from zero in that order and then added to
// out once, so every implementation gives the same bits: the products of float32 values
// are exact in float64, so a fused multiply-add rounds as a multiply and an add do.
using GramTileFn = void (*)(const double* rows, std::int64_t quad_stride, const double* cols,
                            std::int64_t kc, double* out, std::int64_t ldo);

// Plain C++ (the portable fallback, and the reference of the tests).
void gram_tile_portable(const double* rows, std::int64_t quad_stride, const double* cols,
                        std::int64_t kc, double* out, std::int64_t ldo);

namespace avx2 {
// AVX2 + FMA: twelve 4-double accumulators. Only where avx2::available().
void gram_tile(const double* rows, std::int64_t quad_stride, const double* cols,
               std::int64_t kc, double* out, std::int64_t ldo);
}  // namespace avx2

// The fastest tile this CPU runs (CHITA_NO_AVX2=1 forces the portable one).
GramTileFn gram_tile_for_this_cpu();

}  // namespace chita::cpu
