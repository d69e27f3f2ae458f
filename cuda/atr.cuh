// A^T r over all columns or a column subset (column-major A, float32 or bfloat16 storage,
// float32 accumulation, 16-byte loads). Host launcher only.
#pragma once
#include <cuda_runtime_api.h>  // cudaStream_t

#include <cstdint>

#include "chita/matrix_view.h"  // MatrixView

namespace chita::cuda_impl {

// out[t] = sum_i A(i, c_t) r[i] for t < ncols, with c_t = idx[t] (idx != nullptr) or t.
// A must be column-major; all pointers are device memory. Asynchronous on `stream`.
void launch_atr(const MatrixView& A, const float* r, const std::int64_t* idx,
                std::int64_t ncols, float* out, cudaStream_t stream);

}  // namespace chita::cuda_impl
