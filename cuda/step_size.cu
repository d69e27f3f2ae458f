// max_abs_unmasked and support_change_step: order-independent (max/min) but run through the
// same deterministic two-phase reduction as the sums.
#include "step_size.cuh"

#include "block_reduce.cuh"  // run_reduce
#include "device_math.h"     // support_change_term, MaxOp, MinOp

namespace chita::cuda_impl {
namespace {

struct MaxAbsUnmaskedLoad {
  const float* g;
  const std::uint8_t* mask;
  __device__ double operator()(std::int64_t i) const {
    return mask[i] ? 0.0 : fabs(static_cast<double>(g[i]));
  }
};
struct SupportChangeLoad {
  const float* w;
  const float* g;
  double M;
  __device__ double operator()(std::int64_t i) const {
    return cuda_math::support_change_term(w[i], g[i], M);
  }
};

}  // namespace

void launch_max_abs_unmasked(const float* g, const std::uint8_t* mask, std::int64_t m,
                             double* ws, cudaStream_t stream) {
  detail::run_reduce<cuda_math::MaxOp>(MaxAbsUnmaskedLoad{g, mask}, m, ws, stream);
}

void launch_support_change_step(const float* w_s, const float* g_s, std::int64_t k, double M,
                                double* ws, cudaStream_t stream) {
  detail::run_reduce<cuda_math::MinOp>(SupportChangeLoad{w_s, g_s, M}, k, ws, stream);
}

}  // namespace chita::cuda_impl
