// Element-wise ops: grid-stride loops (each element touched by exactly one thread, so
// aliasing out with an input is safe).
#include "elementwise.cuh"

#include "check.cuh"      // CHITA_CUDA_CHECK
#include "grid_stride.cuh"  // CHITA_GRID_STRIDE, grid_stride_blocks

namespace chita::cuda_impl {
namespace {

template <typename T>
__global__ void axpby_kernel(T a, const T* x, T b, const T* y, T* out, std::int64_t m) {
  CHITA_GRID_STRIDE(i, m) out[i] = a * x[i] + b * y[i];
}
__global__ void fill_kernel(float* x, std::int64_t m, float value) {
  CHITA_GRID_STRIDE(i, m) x[i] = value;
}
__global__ void f64_to_f32_kernel(const double* __restrict__ x, float* __restrict__ out,
                                  std::int64_t m) {
  CHITA_GRID_STRIDE(i, m) out[i] = static_cast<float>(x[i]);
}


}  // namespace

void launch_axpby(float a, const float* x, float b, const float* y, float* out, std::int64_t m,
                  cudaStream_t stream) {
  if (m <= 0) return;
  axpby_kernel<float><<<grid_stride_blocks(m), kGridStrideThreads, 0, stream>>>(a, x, b, y, out, m);
  CHITA_CUDA_CHECK_LAUNCH();
}

void launch_axpby_f64(double a, const double* x, double b, const double* y, double* out,
                      std::int64_t m, cudaStream_t stream) {
  if (m <= 0) return;
  axpby_kernel<double><<<grid_stride_blocks(m), kGridStrideThreads, 0, stream>>>(a, x, b, y, out, m);
  CHITA_CUDA_CHECK_LAUNCH();
}

void launch_fill(float* x, std::int64_t m, float value, cudaStream_t stream) {
  if (m <= 0) return;
  if (cuda_math::float_bits(value) == 0) {  // +0.0f: all-zero bytes
    CHITA_CUDA_CHECK(cudaMemsetAsync(x, 0, m * sizeof(float), stream));
    return;
  }
  fill_kernel<<<grid_stride_blocks(m), kGridStrideThreads, 0, stream>>>(x, m, value);
  CHITA_CUDA_CHECK_LAUNCH();
}

void launch_fill_u8(std::uint8_t* x, std::int64_t m, std::uint8_t value, cudaStream_t stream) {
  if (m <= 0) return;
  CHITA_CUDA_CHECK(cudaMemsetAsync(x, value, m, stream));
}

void launch_f64_to_f32(const double* x, float* out, std::int64_t m, cudaStream_t stream) {
  if (m <= 0) return;
  f64_to_f32_kernel<<<grid_stride_blocks(m), kGridStrideThreads, 0, stream>>>(x, out, m);
  CHITA_CUDA_CHECK_LAUNCH();
}

}  // namespace chita::cuda_impl
