// dot, dot_f64, sq_dist: float64 sums with the fixed two-phase order of block_reduce.cuh.
#include "reduce.cuh"

#include "block_reduce.cuh"  // run_reduce

namespace chita::cuda_impl {
namespace {

struct DotLoad {
  const float* x;
  const float* y;
  __device__ double operator()(std::int64_t i) const {
    return static_cast<double>(x[i]) * static_cast<double>(y[i]);
  }
};
struct DotF64Load {
  const double* x;
  const double* y;
  __device__ double operator()(std::int64_t i) const { return x[i] * y[i]; }
};
struct SqDistLoad {
  const float* x;
  const float* y;
  __device__ double operator()(std::int64_t i) const {
    const double d = static_cast<double>(x[i]) - static_cast<double>(y[i]);
    return d * d;
  }
};

}  // namespace

std::int64_t reduce_workspace_doubles(std::int64_t m) {
  return detail::reduce_workspace_doubles(m);
}

void launch_dot(const float* x, const float* y, std::int64_t m, double* ws, cudaStream_t stream) {
  detail::run_reduce<cuda_math::SumOp>(DotLoad{x, y}, m, ws, stream);
}
void launch_dot_f64(const double* x, const double* y, std::int64_t m, double* ws,
                    cudaStream_t stream) {
  detail::run_reduce<cuda_math::SumOp>(DotF64Load{x, y}, m, ws, stream);
}
void launch_sq_dist(const float* x, const float* y, std::int64_t m, double* ws,
                    cudaStream_t stream) {
  detail::run_reduce<cuda_math::SumOp>(SqDistLoad{x, y}, m, ws, stream);
}

}  // namespace chita::cuda_impl
