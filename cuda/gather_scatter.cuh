// Indexed copies between a length-p vector and its support values. Host launchers only;
// asynchronous on `stream`; idx holds k distinct device int64 indices.
#pragma once
#include <cuda_runtime_api.h>  // cudaStream_t

#include <cstdint>

namespace chita::cuda_impl {

// dst[t] = src[idx[t]]
void launch_gather(const float* src, const std::int64_t* idx, std::int64_t k, float* dst,
                   cudaStream_t stream);
// dst[idx[t]] = src[t] (other entries untouched)
void launch_scatter(const float* src, const std::int64_t* idx, std::int64_t k, float* dst,
                    cudaStream_t stream);
// mask[idx[t]] = value
void launch_scatter_u8(std::uint8_t value, const std::int64_t* idx, std::int64_t k,
                       std::uint8_t* mask, cudaStream_t stream);

// x[t] = mask[idx[t]] ? 0 : scale * x[t]
void launch_scale_unmarked(float scale, const std::int64_t* idx, std::int64_t k,
                           const std::uint8_t* mask, float* x, cudaStream_t stream);

}  // namespace chita::cuda_impl
