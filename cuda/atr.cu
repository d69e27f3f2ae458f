// A^T r: one group of lanes (4..32, a power of two) per column of A, streaming the column
// with aligned 16-byte loads (scalar head/tail up to the 16-byte boundaries), float32
// accumulation per lane and a fixed xor-shuffle tree across the group (deterministic).
#include "atr.cuh"

#include "chita/errors.h"  // CHITA_ASSERT
#include "check.cuh"       // CHITA_CUDA_CHECK_LAUNCH
#include "device_math.h"   // split_aligned, atr_group_size
#include "vec_load.cuh"    // Elem<T>

namespace chita::cuda_impl {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads)
    atr_kernel(const T* __restrict__ A, std::int64_t n, const float* __restrict__ r,
               const std::int64_t* __restrict__ idx, std::int64_t ncols, float* __restrict__ out,
               int group) {
  using E = detail::Elem<T>;
  constexpr int kPer = E::kPerVec;
  const int lane = threadIdx.x & 31;
  const int glane = lane & (group - 1);
  const std::int64_t cols_per_warp = 32 / group;
  const std::int64_t warps = kThreads / 32;
  const std::int64_t warp = threadIdx.x / 32;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * warps * cols_per_warp;
  // The loop bound is uniform across the warp, so every lane reaches the shuffles.
  for (std::int64_t base = (blockIdx.x * warps + warp) * cols_per_warp; base < ncols;
       base += stride) {
    const std::int64_t col = base + lane / group;
    float acc = 0.0f;
    if (col < ncols) {
      const std::int64_t j = idx ? idx[col] : col;
      const T* c = A + j * n;
      const cuda_math::VecSplit sp =
          cuda_math::split_aligned(reinterpret_cast<std::uint64_t>(c), n, sizeof(T));
      for (std::int64_t i = glane; i < sp.head; i += group) acc += E::get(c[i]) * __ldg(r + i);
      const uint4* v = reinterpret_cast<const uint4*>(c + sp.head);
      const float* rr = r + sp.head;
      if ((reinterpret_cast<std::uint64_t>(rr) & 15) == 0) {
        const float4* r4 = reinterpret_cast<const float4*>(rr);
#pragma unroll 4
        for (std::int64_t q = glane; q < sp.nvec; q += group) {
          float f[kPer];
          E::unpack(__ldg(v + q), f);
#pragma unroll
          for (int h = 0; h < kPer / 4; ++h) {
            const float4 rv = __ldg(r4 + q * (kPer / 4) + h);
            acc += f[4 * h] * rv.x;
            acc += f[4 * h + 1] * rv.y;
            acc += f[4 * h + 2] * rv.z;
            acc += f[4 * h + 3] * rv.w;
          }
        }
      } else {
#pragma unroll 4
        for (std::int64_t q = glane; q < sp.nvec; q += group) {
          float f[kPer];
          E::unpack(__ldg(v + q), f);
#pragma unroll
          for (int e = 0; e < kPer; ++e) acc += f[e] * __ldg(rr + q * kPer + e);
        }
      }
      for (std::int64_t i = sp.head + sp.nvec * kPer + glane; i < n; i += group)
        acc += E::get(c[i]) * __ldg(r + i);
    }
    for (int off = group / 2; off > 0; off /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (col < ncols && glane == 0) out[col] = acc;
  }
}

template <typename T>
void launch(const MatrixView& A, const float* r, const std::int64_t* idx, std::int64_t ncols,
            float* out, cudaStream_t stream) {
  const int group = cuda_math::atr_group_size(A.n, sizeof(T));
  const std::int64_t cols_per_block = (kThreads / 32) * (32 / group);
  const std::int64_t blocks = cuda_math::min64(cuda_math::ceil_div(ncols, cols_per_block),
                                               std::int64_t{1} << 20);
  atr_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      static_cast<const T*>(A.data), A.n, r, idx, ncols, out, group);
  CHITA_CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_atr(const MatrixView& A, const float* r, const std::int64_t* idx,
                std::int64_t ncols, float* out, cudaStream_t stream) {
  CHITA_ASSERT(A.layout == Layout::col_major);
  if (ncols <= 0) return;
  if (A.dtype == DType::f32)
    launch<float>(A, r, idx, ncols, out, stream);
  else
    launch<std::uint16_t>(A, r, idx, ncols, out, stream);
}

}  // namespace chita::cuda_impl
