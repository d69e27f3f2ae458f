// The portable Gram tile (gram_tile.h) and the choice of tile for this CPU.
#include "cpu/gram_tile.h"

#include "cpu/columns_avx2.h"  // avx2::available

namespace chita::cpu {

// Three 4 x 4 sub-tiles in turn: 16 accumulators fit the 16 SSE2 registers as 8 pairs.
// Each entry is still summed from zero over d in order, as the AVX2 tile does.
void gram_tile_portable(const double* rows, std::int64_t quad_stride, const double* cols,
                        std::int64_t kc, double* out, std::int64_t ldo) {
  for (int q = 0; q < 3; ++q) {
    const double* a = rows + q * quad_stride;
    double acc[4][4] = {};  // acc[c][r]
    for (std::int64_t d = 0; d < kc; ++d)
      for (int c = 0; c < 4; ++c)
        for (int r = 0; r < 4; ++r) acc[c][r] += a[4 * d + r] * cols[4 * d + c];
    for (int c = 0; c < 4; ++c)
      for (int r = 0; r < 4; ++r) out[c * ldo + 4 * q + r] += acc[c][r];
  }
}

GramTileFn gram_tile_for_this_cpu() {
  return avx2::available() ? avx2::gram_tile : gram_tile_portable;
}

}  // namespace chita::cpu
