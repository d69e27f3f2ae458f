// Deterministic float64 sums over device vectors: dot, dot_f64, sq_dist. Host launchers only.
#pragma once
#include <cuda_runtime_api.h>  // cudaStream_t

#include <cstdint>

namespace chita::cuda_impl {

// Device workspace (doubles) each launcher below needs for m elements; the result is
// written to ws[0] (device memory), asynchronously on `stream`.
std::int64_t reduce_workspace_doubles(std::int64_t m);

void launch_dot(const float* x, const float* y, std::int64_t m, double* ws, cudaStream_t stream);
void launch_dot_f64(const double* x, const double* y, std::int64_t m, double* ws,
                    cudaStream_t stream);
// sum_j (x[j] - y[j])^2, differences taken in float64.
void launch_sq_dist(const float* x, const float* y, std::int64_t m, double* ws,
                    cudaStream_t stream);

}  // namespace chita::cuda_impl
