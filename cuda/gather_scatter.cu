// gather / scatter / scatter_u8: one thread per index (indices are distinct, so scatters
// never collide).
#include "gather_scatter.cuh"

#include "check.cuh"      // CHITA_CUDA_CHECK_LAUNCH
#include "grid_stride.cuh"  // CHITA_GRID_STRIDE, grid_stride_blocks

namespace chita::cuda_impl {
namespace {

__global__ void gather_kernel(const float* __restrict__ src, const std::int64_t* __restrict__ idx,
                              std::int64_t k, float* __restrict__ dst) {
  CHITA_GRID_STRIDE(t, k) dst[t] = src[idx[t]];
}
__global__ void scatter_kernel(const float* __restrict__ src,
                               const std::int64_t* __restrict__ idx, std::int64_t k,
                               float* __restrict__ dst) {
  CHITA_GRID_STRIDE(t, k) dst[idx[t]] = src[t];
}
__global__ void scatter_u8_kernel(std::uint8_t value, const std::int64_t* __restrict__ idx,
                                  std::int64_t k, std::uint8_t* __restrict__ mask) {
  CHITA_GRID_STRIDE(t, k) mask[idx[t]] = value;
}

__global__ void scale_unmarked_kernel(float scale, const std::int64_t* __restrict__ idx,
                                      std::int64_t k, const std::uint8_t* __restrict__ mask,
                                      float* __restrict__ x) {
  CHITA_GRID_STRIDE(t, k) x[t] = mask[idx[t]] ? 0.0f : scale * x[t];
}


}  // namespace

void launch_gather(const float* src, const std::int64_t* idx, std::int64_t k, float* dst,
                   cudaStream_t stream) {
  if (k <= 0) return;
  gather_kernel<<<grid_stride_blocks(k), kGridStrideThreads, 0, stream>>>(src, idx, k, dst);
  CHITA_CUDA_CHECK_LAUNCH();
}

void launch_scatter(const float* src, const std::int64_t* idx, std::int64_t k, float* dst,
                    cudaStream_t stream) {
  if (k <= 0) return;
  scatter_kernel<<<grid_stride_blocks(k), kGridStrideThreads, 0, stream>>>(src, idx, k, dst);
  CHITA_CUDA_CHECK_LAUNCH();
}

void launch_scatter_u8(std::uint8_t value, const std::int64_t* idx, std::int64_t k,
                       std::uint8_t* mask, cudaStream_t stream) {
  if (k <= 0) return;
  scatter_u8_kernel<<<grid_stride_blocks(k), kGridStrideThreads, 0, stream>>>(value, idx, k, mask);
  CHITA_CUDA_CHECK_LAUNCH();
}

void launch_scale_unmarked(float scale, const std::int64_t* idx, std::int64_t k,
                           const std::uint8_t* mask, float* x, cudaStream_t stream) {
  if (k <= 0) return;
  scale_unmarked_kernel<<<grid_stride_blocks(k), kGridStrideThreads, 0, stream>>>(scale, idx, k, mask, x);
  CHITA_CUDA_CHECK_LAUNCH();
}

}  // namespace chita::cuda_impl
