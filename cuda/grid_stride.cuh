// Launch shape shared by the one-thread-per-element kernels (elementwise, gather/scatter):
// a grid-stride loop, so every element is touched by exactly one thread.
#pragma once
#include <cstdint>

#include "device_math.h"  // ceil_div, clamp64

namespace chita::cuda_impl {

constexpr int kGridStrideThreads = 256;

inline unsigned grid_stride_blocks(std::int64_t m) {
  return static_cast<unsigned>(
      cuda_math::clamp64(cuda_math::ceil_div(m, kGridStrideThreads), 1, 8192));
}

}  // namespace chita::cuda_impl

#define CHITA_GRID_STRIDE(i, m)                                                               \
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; \
       i < (m); i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
