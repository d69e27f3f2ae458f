// Single-thread products with a range of A's columns: the pieces of atr and ax, for
// kernels that fuse them (gradient_pass.cpp). Column-major A for add_scaled_columns.
#pragma once
#include <cstdint>
#include <vector>

#include "chita/matrix_view.h"

namespace chita::cpu {

// r as the column kernels read it: bfloat16 column-major A with even n is read as 32-bit
// words of two values, so r is split once into its even and odd entries.
struct PreparedResidual {
  PreparedResidual(const MatrixView& A, const float* r);
  const float* r;
  bool bf16_pairs = false;
  std::vector<float> even, odd;
};

// out[t] = dot(column idx[t] (or t), r) for t in [begin, end).
void atr_columns(const MatrixView& A, const PreparedResidual& r, const std::int64_t* idx,
                 std::int64_t begin, std::int64_t end, float* out);

// acc[0..n) += sum over t in [begin, end) of x[t] * column idx[t] (or t), in float64;
// zero x[t] are skipped. Column-major A only.
void add_scaled_columns(const MatrixView& A, const std::int64_t* idx, const float* x,
                        std::int64_t begin, std::int64_t end, double* acc);

}  // namespace chita::cpu
