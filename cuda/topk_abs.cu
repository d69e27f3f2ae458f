// Top-k by magnitude in O(m): 4 radix passes (8-bit digits of the |x| key, MSB first; each a
// histogram of the keys still matching the chosen prefix, then a one-thread digit choice on
// the device), which yield the k-th largest key T and how many keys equal to T to take;
// then count / scan / write kernels over fixed 4096-element chunks emit, in index order,
// every j with key > T and the first `need` with key == T (device_math.h: topk_position).
// Integer counts only: exact and deterministic.
#include "topk_abs.cuh"

#include "chita/errors.h"  // CHITA_ASSERT
#include "check.cuh"       // CHITA_CUDA_CHECK
#include "device_math.h"   // abs_key, radix_*, topk_selected, topk_position

namespace chita::cuda_impl {
namespace {

namespace cm = cuda_math;
using ull = unsigned long long;
constexpr int kThreads = 256;
constexpr int kTilesPerChunk = 16;
constexpr std::int64_t kChunk = kThreads * kTilesPerChunk;  // elements per compaction block
constexpr int kScanThreads = 1024;
constexpr unsigned kFull = 0xffffffffu;

struct State {
  ull k_rem;            // rank of the wanted key among those matching `prefix`
  std::uint32_t prefix; // digits chosen so far
};

struct WsLayout {  // byte offsets into the workspace
  std::int64_t hist, state, counts, offsets, total;
};
WsLayout layout(std::int64_t m) {
  const std::int64_t nb = cm::ceil_div(m, kChunk);
  WsLayout l{};
  l.hist = 0;                                                   // 4 x 256 ull
  l.state = l.hist + cm::kRadixPasses * cm::kRadixBins * 8;     // State (16 bytes)
  l.counts = l.state + 16;                                      // nb x {gt, eq} ull
  l.offsets = l.counts + nb * 2 * 8;                            // nb x {gt, eq} ull, exclusive
  l.total = l.offsets + nb * 2 * 8;
  return l;
}

__global__ void init_kernel(State* st, ull k) {
  st->k_rem = k;
  st->prefix = 0;
}

// Histogram of digit `pass` over the keys whose earlier digits equal state->prefix.
// Warp-aggregated shared-memory counts (lanes with the same digit add once), then one
// global add per non-empty bin. Bin kRadixBins collects the lanes not in play.
__global__ void __launch_bounds__(kThreads)
    histogram_kernel(const float* __restrict__ x, std::int64_t m, int pass,
                     const State* __restrict__ st, ull* __restrict__ hist) {
  __shared__ unsigned sh[cm::kRadixBins + 1];
  for (int d = threadIdx.x; d <= cm::kRadixBins; d += kThreads) sh[d] = 0;
  __syncthreads();
  const std::uint32_t prefix = st->prefix, mask = cm::radix_prefix_mask(pass);
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * kThreads;
  // Uniform trip count per warp: all lanes reach __match_any_sync.
  const std::int64_t warp_base = blockIdx.x * static_cast<std::int64_t>(kThreads) +
                                 (threadIdx.x & ~31);
  for (std::int64_t base = warp_base; base < m; base += stride) {
    const std::int64_t i = base + (threadIdx.x & 31);
    unsigned d = cm::kRadixBins;
    if (i < m) {
      const std::uint32_t key = cm::abs_key(x[i]);
      if ((key & mask) == prefix) d = cm::radix_digit(key, pass);
    }
    const unsigned peers = __match_any_sync(kFull, d);
    if ((threadIdx.x & 31) == __ffs(peers) - 1) atomicAdd(&sh[d], __popc(peers));
  }
  __syncthreads();
  for (int d = threadIdx.x; d < cm::kRadixBins; d += kThreads)
    if (sh[d]) atomicAdd(&hist[d], static_cast<ull>(sh[d]));
}

__global__ void select_kernel(const ull* __restrict__ hist, int pass, State* st) {
  ull k_rem;
  const std::uint32_t d = cm::radix_select_digit(hist, st->k_rem, &k_rem);
  st->prefix = cm::radix_set_digit(st->prefix, pass, d);
  st->k_rem = k_rem;
}

// counts[b] = {#key > T, #key == T} over chunk b.
__global__ void __launch_bounds__(kThreads)
    count_kernel(const float* __restrict__ x, std::int64_t m, const State* __restrict__ st,
                 ull* __restrict__ counts) {
  const std::uint32_t T = st->prefix;
  const std::int64_t begin = blockIdx.x * kChunk;
  unsigned gt = 0, eq = 0;
  for (int tile = 0; tile < kTilesPerChunk; ++tile) {
    const std::int64_t i = begin + tile * kThreads + threadIdx.x;
    const std::uint32_t key = i < m ? cm::abs_key(x[i]) : 0u;
    gt += __syncthreads_count(i < m && key > T);
    eq += __syncthreads_count(i < m && key == T);
  }
  if (threadIdx.x == 0) {
    counts[2 * blockIdx.x] = gt;
    counts[2 * blockIdx.x + 1] = eq;
  }
}

// Exclusive prefix sums of the {gt, eq} pairs over nb chunks, one block: each thread sums a
// contiguous segment, a shared-memory scan combines the segments.
__global__ void __launch_bounds__(kScanThreads)
    scan_kernel(const ull* __restrict__ counts, std::int64_t nb, ull* __restrict__ offsets) {
  __shared__ ull sg[kScanThreads], se[kScanThreads];
  const std::int64_t per = cm::ceil_div(nb, kScanThreads);
  const std::int64_t lo = cm::min64(threadIdx.x * per, nb), hi = cm::min64(lo + per, nb);
  ull g = 0, e = 0;
  for (std::int64_t b = lo; b < hi; ++b) {
    g += counts[2 * b];
    e += counts[2 * b + 1];
  }
  sg[threadIdx.x] = g;
  se[threadIdx.x] = e;
  __syncthreads();
  for (int off = 1; off < kScanThreads; off *= 2) {  // inclusive Hillis-Steele scan
    const ull ag = threadIdx.x >= off ? sg[threadIdx.x - off] : 0;
    const ull ae = threadIdx.x >= off ? se[threadIdx.x - off] : 0;
    __syncthreads();
    sg[threadIdx.x] += ag;
    se[threadIdx.x] += ae;
    __syncthreads();
  }
  g = sg[threadIdx.x] - g;  // exclusive
  e = se[threadIdx.x] - e;
  for (std::int64_t b = lo; b < hi; ++b) {
    offsets[2 * b] = g;
    offsets[2 * b + 1] = e;
    g += counts[2 * b];
    e += counts[2 * b + 1];
  }
}

// Writes the selected indices of chunk b, walking its tiles in index order.
__global__ void __launch_bounds__(kThreads)
    write_kernel(const float* __restrict__ x, std::int64_t m, const State* __restrict__ st,
                 const ull* __restrict__ offsets, std::int64_t* __restrict__ idx_out) {
  constexpr int kWarps = kThreads / 32;
  __shared__ unsigned wg[kWarps], we[kWarps];
  const std::uint32_t T = st->prefix;
  const std::int64_t need = static_cast<std::int64_t>(st->k_rem);
  const int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
  const unsigned below = (1u << lane) - 1u;  // lanes before this one
  std::int64_t gt_off = static_cast<std::int64_t>(offsets[2 * blockIdx.x]);
  std::int64_t eq_off = static_cast<std::int64_t>(offsets[2 * blockIdx.x + 1]);
  const std::int64_t begin = blockIdx.x * kChunk;
  for (int tile = 0; tile < kTilesPerChunk; ++tile) {
    const std::int64_t i = begin + tile * kThreads + threadIdx.x;
    const std::uint32_t key = i < m ? cm::abs_key(x[i]) : 0u;
    const bool is_gt = i < m && key > T, is_eq = i < m && key == T;
    const unsigned bg = __ballot_sync(kFull, is_gt), be = __ballot_sync(kFull, is_eq);
    if (lane == 0) {
      wg[warp] = __popc(bg);
      we[warp] = __popc(be);
    }
    __syncthreads();
    std::int64_t g = gt_off + __popc(bg & below), e = eq_off + __popc(be & below);
    std::int64_t tg = 0, te = 0;
    for (int w = 0; w < kWarps; ++w) {
      if (w < warp) {
        g += wg[w];
        e += we[w];
      }
      tg += wg[w];
      te += we[w];
    }
    if (is_gt || (is_eq && cm::topk_selected(key, T, e, need)))
      idx_out[cm::topk_position(g, e, need)] = i;
    gt_off += tg;
    eq_off += te;
    __syncthreads();  // wg/we are rewritten by the next tile
  }
}

}  // namespace

std::int64_t topk_abs_workspace_bytes(std::int64_t m) { return layout(m).total; }

void launch_topk_abs(const float* x, std::int64_t m, std::int64_t k, std::int64_t* idx_out,
                     void* workspace, cudaStream_t stream) {
  CHITA_ASSERT(k >= 1 && k <= m);
  const WsLayout l = layout(m);
  char* ws = static_cast<char*>(workspace);
  ull* hist = reinterpret_cast<ull*>(ws + l.hist);
  State* st = reinterpret_cast<State*>(ws + l.state);
  ull* counts = reinterpret_cast<ull*>(ws + l.counts);
  ull* offsets = reinterpret_cast<ull*>(ws + l.offsets);
  const std::int64_t nb = cm::ceil_div(m, kChunk);
  CHITA_ASSERT(nb < (std::int64_t{1} << 31));

  CHITA_CUDA_CHECK(cudaMemsetAsync(hist, 0, l.state - l.hist, stream));
  init_kernel<<<1, 1, 0, stream>>>(st, static_cast<ull>(k));
  CHITA_CUDA_CHECK_LAUNCH();
  const unsigned hblocks = static_cast<unsigned>(cm::clamp64(nb, 1, 1024));
  for (int pass = 0; pass < cm::kRadixPasses; ++pass) {
    ull* h = hist + pass * cm::kRadixBins;
    histogram_kernel<<<hblocks, kThreads, 0, stream>>>(x, m, pass, st, h);
    CHITA_CUDA_CHECK_LAUNCH();
    select_kernel<<<1, 1, 0, stream>>>(h, pass, st);
    CHITA_CUDA_CHECK_LAUNCH();
  }
  const unsigned blocks = static_cast<unsigned>(nb);
  count_kernel<<<blocks, kThreads, 0, stream>>>(x, m, st, counts);
  CHITA_CUDA_CHECK_LAUNCH();
  scan_kernel<<<1, kScanThreads, 0, stream>>>(counts, nb, offsets);
  CHITA_CUDA_CHECK_LAUNCH();
  write_kernel<<<blocks, kThreads, 0, stream>>>(x, m, st, offsets, idx_out);
  CHITA_CUDA_CHECK_LAUNCH();
}

}  // namespace chita::cuda_impl
