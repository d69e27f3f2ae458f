// The IHT step-size reductions (max over the unmasked |g|, min of the support-change terms).
// Host launchers only.
#pragma once
#include <cuda_runtime_api.h>  // cudaStream_t

#include <cstdint>

namespace chita::cuda_impl {

// Workspace as for reduce.cuh (reduce_workspace_doubles); result in ws[0] (device).
// ws[0] = max_{j : mask[j] == 0} |g[j]| (0 when all are masked).
void launch_max_abs_unmasked(const float* g, const std::uint8_t* mask, std::int64_t m,
                             double* ws, cudaStream_t stream);
// ws[0] = min_t support_change_term(w_s[t], g_s[t], M) (+inf when none qualifies).
void launch_support_change_step(const float* w_s, const float* g_s, std::int64_t k, double M,
                                double* ws, cudaStream_t stream);

}  // namespace chita::cuda_impl
