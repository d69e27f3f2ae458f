// Gram matrices of a column subset, formed on the device in float64 and copied to the host
// (the solver factors them there: see docs/cuda.md). Host launcher only.
#pragma once
#include <cuda_runtime_api.h>  // cudaStream_t

#include <cstdint>

#include "chita/matrix_view.h"  // MatrixView

namespace chita::cuda_impl {

enum class GramKind {
  rows,  // n x n: A_S A_S^T = sum_t a_t a_t^T
  cols,  // k x k: A_S^T A_S
};

// Device workspace (bytes) launch_gram needs.
std::int64_t gram_workspace_bytes(const MatrixView& A, std::int64_t k, GramKind kind);

// Writes the D x D row-major float64 matrix (D = n for rows, k for cols) to `host_out`
// (host memory). Column-major A; idx: k device int64 indices. Synchronises `stream`.
void launch_gram(const MatrixView& A, const std::int64_t* idx, std::int64_t k, GramKind kind,
                 double* host_out, void* workspace, cudaStream_t stream);

}  // namespace chita::cuda_impl
