// A x over a set of columns (the support, or all of them), float64 output. Host launcher only.
#pragma once
#include <cuda_runtime_api.h>  // cudaStream_t

#include <cstdint>

#include "chita/matrix_view.h"  // MatrixView

namespace chita::cuda_impl {

// Device workspace (bytes) launch_ax needs for A (n rows) and k columns.
std::int64_t ax_workspace_bytes(const MatrixView& A, std::int64_t k);

// out[i] = sum_t A(i, c_t) x[t] for i < n (overwrites out), c_t = idx[t] (idx != nullptr)
// or t. Column-major A; device pointers; float64 accumulation in a fixed order (columns in
// order within each split, splits in order). Asynchronous on `stream`.
void launch_ax(const MatrixView& A, const std::int64_t* idx, const float* x, std::int64_t k,
               double* out, void* workspace, cudaStream_t stream);

}  // namespace chita::cuda_impl
