// Internal to cuda/ (device code + one host template): the deterministic two-phase
// reduction shared by reduce.cu and step_size.cu. The partition and the order are those of
// device_math.h (reduce_blocks, block_range, tree_reduce), independent of the GPU, so a
// result is bitwise reproducible for a given input.
#pragma once
#include <cuda_runtime_api.h>  // cudaStream_t

#include <cstdint>

#include "check.cuh"      // CHITA_CUDA_CHECK_LAUNCH
#include "device_math.h"  // reduce_blocks, reduce_chunk, block_range, tree_step

namespace chita::cuda_impl::detail {

namespace cm = cuda_math;

// Combines the kReduceThreads values of a block with the halving tree; result in thread 0.
template <typename Op>
__device__ __forceinline__ double block_tree(double v, double* s) {
  s[threadIdx.x] = v;
  __syncthreads();
  for (int st = cm::kReduceThreads / 2; st > 0; st /= 2) {
    if (static_cast<int>(threadIdx.x) < st) cm::tree_step<Op>(s, threadIdx.x, st);
    __syncthreads();
  }
  return s[0];
}

// partials[b] = Op over block b's range of load(i).
template <typename Op, typename Load>
__global__ void __launch_bounds__(cm::kReduceThreads)
    reduce_partials_kernel(Load load, std::int64_t m, std::int64_t chunk, double* partials) {
  __shared__ double s[cm::kReduceThreads];
  const cm::Range rg = cm::block_range(blockIdx.x, m, chunk);
  double acc = Op::identity();
  for (std::int64_t i = rg.begin + threadIdx.x; i < rg.end; i += cm::kReduceThreads)
    acc = Op::combine(acc, load(i));
  const double r = block_tree<Op>(acc, s);
  if (threadIdx.x == 0) partials[blockIdx.x] = r;
}

// out[0] = Op over the partials (thread t takes t, t + kReduceThreads, ...).
template <typename Op>
__global__ void __launch_bounds__(cm::kReduceThreads)
    reduce_final_kernel(const double* __restrict__ partials, std::int64_t nb, double* out) {
  __shared__ double s[cm::kReduceThreads];
  double acc = Op::identity();
  for (std::int64_t i = threadIdx.x; i < nb; i += cm::kReduceThreads)
    acc = Op::combine(acc, partials[i]);
  const double r = block_tree<Op>(acc, s);
  if (threadIdx.x == 0) out[0] = r;
}

// Doubles of workspace run_reduce needs: the result slot, then one partial per block.
inline std::int64_t reduce_workspace_doubles(std::int64_t m) { return 1 + cm::reduce_blocks(m); }

// ws[0] = Op over load(0..m). `load` is a device functor (double operator()(int64_t)).
template <typename Op, typename Load>
void run_reduce(Load load, std::int64_t m, double* ws, cudaStream_t stream) {
  const std::int64_t nb = cm::reduce_blocks(m);
  const std::int64_t chunk = cm::reduce_chunk(m, nb);
  reduce_partials_kernel<Op, Load>
      <<<static_cast<unsigned>(nb), cm::kReduceThreads, 0, stream>>>(load, m, chunk, ws + 1);
  CHITA_CUDA_CHECK_LAUNCH();
  reduce_final_kernel<Op><<<1, cm::kReduceThreads, 0, stream>>>(ws + 1, nb, ws);
  CHITA_CUDA_CHECK_LAUNCH();
}

}  // namespace chita::cuda_impl::detail
