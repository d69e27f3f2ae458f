// Exact top-k by magnitude: radix select over the bits of |x|, then a compaction in index
// order (so the output is sorted ascending without a sort). Host launcher only.
#pragma once
#include <cuda_runtime_api.h>  // cudaStream_t

#include <cstdint>

namespace chita::cuda_impl {

// Device workspace (bytes) launch_topk_abs needs for m values.
std::int64_t topk_abs_workspace_bytes(std::int64_t m);

// idx_out[0..k) = indices of the k largest |x[j]|, ascending; ties go to the smaller index.
// 1 <= k <= m; device pointers; asynchronous on `stream`, no host round trip.
void launch_topk_abs(const float* x, std::int64_t m, std::int64_t k, std::int64_t* idx_out,
                     void* workspace, cudaStream_t stream);

}  // namespace chita::cuda_impl
