// A x over a column set. Grid = (row tiles) x (column splits): a thread owns 16 bytes of
// consecutive rows and walks its split's columns in order (coalesced 16-byte loads when
// every column is 16-byte aligned, coalesced scalar loads otherwise), accumulating in
// float64; a second kernel adds the splits' partials in split order. No atomics: the result
// is the same on every run and every GPU.
#include "ax.cuh"

#include "chita/errors.h"  // CHITA_ASSERT
#include "check.cuh"       // CHITA_CUDA_CHECK
#include "device_math.h"   // ax_splits, ax_rows_per_block, block_range
#include "vec_load.cuh"    // Elem<T>

namespace chita::cuda_impl {
namespace {

namespace cm = cuda_math;
constexpr int kThreads = cm::kAxThreads;

template <typename T>
__global__ void __launch_bounds__(kThreads)
    ax_partial_kernel(const T* __restrict__ A, std::int64_t n,
                      const std::int64_t* __restrict__ idx, const float* __restrict__ x,
                      std::int64_t k, std::int64_t chunk, bool vec,
                      double* __restrict__ partial) {
  using E = detail::Elem<T>;
  constexpr int kPer = E::kPerVec;
  const std::int64_t row0 = blockIdx.x * cm::ax_rows_per_block(sizeof(T));
  const cm::Range cols = cm::block_range(blockIdx.y, k, chunk);
  double* part = partial + static_cast<std::int64_t>(blockIdx.y) * n;
  double acc[kPer];
#pragma unroll
  for (int e = 0; e < kPer; ++e) acc[e] = 0.0;
  if (vec) {  // n % kPer == 0 and 16-byte aligned columns: rows i0 .. i0 + kPer - 1
    const std::int64_t i0 = row0 + static_cast<std::int64_t>(threadIdx.x) * kPer;
    if (i0 >= n) return;
#pragma unroll 4
    for (std::int64_t t = cols.begin; t < cols.end; ++t) {
      const std::int64_t j = idx ? idx[t] : t;
      const double xv = x[t];
      float f[kPer];
      E::unpack(__ldg(reinterpret_cast<const uint4*>(A + j * n + i0)), f);
#pragma unroll
      for (int e = 0; e < kPer; ++e) acc[e] = fma(static_cast<double>(f[e]), xv, acc[e]);
    }
#pragma unroll
    for (int e = 0; e < kPer; ++e) part[i0 + e] = acc[e];
  } else {  // rows row0 + threadIdx.x + e * kThreads
#pragma unroll 2
    for (std::int64_t t = cols.begin; t < cols.end; ++t) {
      const std::int64_t j = idx ? idx[t] : t;
      const double xv = x[t];
      const T* c = A + j * n;
#pragma unroll
      for (int e = 0; e < kPer; ++e) {
        const std::int64_t i = row0 + threadIdx.x + e * kThreads;
        if (i < n) acc[e] = fma(static_cast<double>(E::get(c[i])), xv, acc[e]);
      }
    }
#pragma unroll
    for (int e = 0; e < kPer; ++e) {
      const std::int64_t i = row0 + threadIdx.x + e * kThreads;
      if (i < n) part[i] = acc[e];
    }
  }
}

__global__ void ax_finish_kernel(const double* __restrict__ partial, std::int64_t n,
                                 std::int64_t splits, double* __restrict__ out) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    double s = 0.0;
    for (std::int64_t sp = 0; sp < splits; ++sp) s += partial[sp * n + i];
    out[i] = s;
  }
}

template <typename T>
void launch(const MatrixView& A, const std::int64_t* idx, const float* x, std::int64_t k,
            double* out, double* partial, cudaStream_t stream) {
  const std::int64_t n = A.n;
  const std::int64_t splits = cm::ax_splits(n, k, sizeof(T));
  const std::int64_t chunk = cm::ceil_div(k, splits);
  const std::int64_t row_tiles = cm::ceil_div(n, cm::ax_rows_per_block(sizeof(T)));
  const bool vec = (reinterpret_cast<std::uint64_t>(A.data) & 15) == 0 &&
                   (n * static_cast<std::int64_t>(sizeof(T))) % 16 == 0;
  CHITA_ASSERT(row_tiles < (std::int64_t{1} << 31) && splits <= 65535);
  const dim3 grid(static_cast<unsigned>(row_tiles), static_cast<unsigned>(splits));
  ax_partial_kernel<T><<<grid, kThreads, 0, stream>>>(static_cast<const T*>(A.data), n, idx, x,
                                                      k, chunk, vec, partial);
  CHITA_CUDA_CHECK_LAUNCH();
  const unsigned blocks = static_cast<unsigned>(cm::min64(cm::ceil_div(n, 256), 4096));
  ax_finish_kernel<<<blocks, 256, 0, stream>>>(partial, n, splits, out);
  CHITA_CUDA_CHECK_LAUNCH();
}

}  // namespace

std::int64_t ax_workspace_bytes(const MatrixView& A, std::int64_t k) {
  const int esize = static_cast<int>(A.element_bytes());
  return cm::ax_splits(A.n, k, esize) * A.n * static_cast<std::int64_t>(sizeof(double));
}

void launch_ax(const MatrixView& A, const std::int64_t* idx, const float* x, std::int64_t k,
               double* out, void* workspace, cudaStream_t stream) {
  CHITA_ASSERT(A.layout == Layout::col_major);
  if (A.n <= 0) return;
  if (k <= 0) {
    CHITA_CUDA_CHECK(cudaMemsetAsync(out, 0, A.n * sizeof(double), stream));
    return;
  }
  double* partial = static_cast<double*>(workspace);
  if (A.dtype == DType::f32)
    launch<float>(A, idx, x, k, out, partial, stream);
  else
    launch<std::uint16_t>(A, idx, x, k, out, partial, stream);
}

}  // namespace chita::cuda_impl
