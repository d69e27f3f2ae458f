// Element-wise vector ops on device memory. Host launchers only; asynchronous on `stream`.
#pragma once
#include <cuda_runtime_api.h>  // cudaStream_t

#include <cstdint>

namespace chita::cuda_impl {

// out = a * x + b * y (float32; out may alias x or y).
void launch_axpby(float a, const float* x, float b, const float* y, float* out, std::int64_t m,
                  cudaStream_t stream);
// out = a * x + b * y (float64; out may alias x or y).
void launch_axpby_f64(double a, const double* x, double b, const double* y, double* out,
                      std::int64_t m, cudaStream_t stream);
void launch_fill(float* x, std::int64_t m, float value, cudaStream_t stream);
void launch_fill_u8(std::uint8_t* x, std::int64_t m, std::uint8_t value, cudaStream_t stream);
// out[j] = (float) x[j], round to nearest.
void launch_f64_to_f32(const double* x, float* out, std::int64_t m, cudaStream_t stream);

}  // namespace chita::cuda_impl
