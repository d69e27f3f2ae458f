// Gram matrices: out[a][b] = sum_r V(a, r) V(b, r), with V(a, r) = A(a, idx[r]) (rows kind)
// or A(r, idx[a]) (cols kind). Blocks own upper-triangular 64 x 64 output tiles (the lower
// half is mirrored) and a split of the summed index r; 16 values of r are staged in shared
// memory per step and each thread accumulates a 4 x 4 sub-tile with float64 FMAs (products
// of two floats are exact in float64). A finishing kernel adds the splits in order and
// mirrors. No atomics: deterministic.
#include "gram.cuh"

#include "chita/errors.h"  // CHITA_ASSERT
#include "check.cuh"       // CHITA_CUDA_CHECK
#include "device_math.h"   // gram_pairs, gram_pair, gram_splits, gram_split_len
#include "vec_load.cuh"    // Elem<T>

namespace chita::cuda_impl {
namespace {

namespace cm = cuda_math;
constexpr int kTile = cm::kGramTile;  // 64
constexpr int kStep = cm::kGramStep;  // 16
constexpr int kThreads = 256;         // 16 x 16 threads, 4 x 4 outputs each

template <typename T, bool kRows>
__device__ __forceinline__ float load_v(const T* __restrict__ A, std::int64_t n,
                                        const std::int64_t* __restrict__ idx, std::int64_t a,
                                        std::int64_t r) {
  using E = detail::Elem<T>;
  return kRows ? E::get(A[idx[r] * n + a]) : E::get(A[idx[a] * n + r]);
}

template <typename T, bool kRows>
__global__ void __launch_bounds__(kThreads)
    gram_partial_kernel(const T* __restrict__ A, std::int64_t n,
                        const std::int64_t* __restrict__ idx, std::int64_t D, std::int64_t R,
                        std::int64_t split_len, std::int64_t tiles,
                        double* __restrict__ partial) {
  __shared__ float sa[kStep][kTile + 1];  // +1: conflict-free column-wise stores (cols kind)
  __shared__ float sb[kStep][kTile + 1];
  std::int64_t ta, tb;
  cm::gram_pair(blockIdx.x, tiles, &ta, &tb);
  const std::int64_t a0 = ta * kTile, b0 = tb * kTile;
  const std::int64_t r_begin = cm::min64(blockIdx.y * split_len, R);
  const std::int64_t r_end = cm::min64(r_begin + split_len, R);
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  double acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0;

  for (std::int64_t r0 = r_begin; r0 < r_end; r0 += kStep) {
#pragma unroll
    for (int q = 0; q < (kTile * kStep) / kThreads; ++q) {
      const int e = threadIdx.x + q * kThreads;
      // Consecutive threads read consecutive addresses: along a (rows) or along r (cols).
      const int a = kRows ? e % kTile : e / kStep;
      const int r = kRows ? e / kTile : e % kStep;
      const std::int64_t rr = r0 + r;
      const bool in_r = rr < r_end;
      sa[r][a] = (in_r && a0 + a < D) ? load_v<T, kRows>(A, n, idx, a0 + a, rr) : 0.0f;
      sb[r][a] = (in_r && b0 + a < D) ? load_v<T, kRows>(A, n, idx, b0 + a, rr) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kStep; ++r) {
      double va[4], vb[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        va[i] = sa[r][ty + 16 * i];
        vb[i] = sb[r][tx + 16 * i];
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fma(va[i], vb[j], acc[i][j]);
    }
    __syncthreads();
  }
  double* part = partial + static_cast<std::int64_t>(blockIdx.y) * D * D;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const std::int64_t a = a0 + ty + 16 * i, b = b0 + tx + 16 * j;
      if (a < D && b < D) part[a * D + b] = acc[i][j];
    }
}

// out[a][b] = sum over splits of partial[split][min(a,b)][max(a,b)], splits in order.
__global__ void gram_finish_kernel(const double* __restrict__ partial, std::int64_t D,
                                   std::int64_t splits, double* __restrict__ out) {
  const std::int64_t total = D * D;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
       e < total; e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t a = e / D, b = e % D;
    const std::int64_t upper = a <= b ? a * D + b : b * D + a;
    double s = 0.0;
    for (std::int64_t sp = 0; sp < splits; ++sp) s += partial[sp * total + upper];
    out[e] = s;
  }
}

template <typename T, bool kRows>
void launch(const MatrixView& A, const std::int64_t* idx, std::int64_t D, std::int64_t R,
            double* partial, double* out, cudaStream_t stream) {
  const std::int64_t splits = cm::gram_splits(D, R);
  const std::int64_t split_len = cm::gram_split_len(D, R);
  const std::int64_t pairs = cm::gram_pairs(D);
  const std::int64_t tiles = cm::ceil_div(D, kTile);
  CHITA_ASSERT(pairs < (std::int64_t{1} << 31) && splits <= 65535);
  const dim3 grid(static_cast<unsigned>(pairs), static_cast<unsigned>(splits));
  gram_partial_kernel<T, kRows><<<grid, kThreads, 0, stream>>>(
      static_cast<const T*>(A.data), A.n, idx, D, R, split_len, tiles, partial);
  CHITA_CUDA_CHECK_LAUNCH();
  const unsigned blocks = static_cast<unsigned>(cm::clamp64(cm::ceil_div(D * D, 256), 1, 8192));
  gram_finish_kernel<<<blocks, 256, 0, stream>>>(partial, D, splits, out);
  CHITA_CUDA_CHECK_LAUNCH();
}

void dims(const MatrixView& A, std::int64_t k, GramKind kind, std::int64_t* D, std::int64_t* R) {
  *D = kind == GramKind::rows ? A.n : k;
  *R = kind == GramKind::rows ? k : A.n;
}

}  // namespace

std::int64_t gram_workspace_bytes(const MatrixView& A, std::int64_t k, GramKind kind) {
  std::int64_t D, R;
  dims(A, k, kind, &D, &R);
  return (cm::gram_splits(D, R) + 1) * D * D * static_cast<std::int64_t>(sizeof(double));
}

void launch_gram(const MatrixView& A, const std::int64_t* idx, std::int64_t k, GramKind kind,
                 double* host_out, void* workspace, cudaStream_t stream) {
  CHITA_ASSERT(A.layout == Layout::col_major);
  std::int64_t D, R;
  dims(A, k, kind, &D, &R);
  if (D <= 0) return;
  const std::int64_t bytes = D * D * static_cast<std::int64_t>(sizeof(double));
  double* out = static_cast<double*>(workspace);
  if (R <= 0) {
    CHITA_CUDA_CHECK(cudaMemsetAsync(out, 0, bytes, stream));
  } else {
    double* partial = out + D * D;
    const bool rows = kind == GramKind::rows;
    if (A.dtype == DType::f32)
      rows ? launch<float, true>(A, idx, D, R, partial, out, stream)
           : launch<float, false>(A, idx, D, R, partial, out, stream);
    else
      rows ? launch<std::uint16_t, true>(A, idx, D, R, partial, out, stream)
           : launch<std::uint16_t, false>(A, idx, D, R, partial, out, stream);
  }
  CHITA_CUDA_CHECK(cudaMemcpyAsync(host_out, out, bytes, cudaMemcpyDeviceToHost, stream));
  CHITA_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace chita::cuda_impl
