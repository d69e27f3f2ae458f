// block: block-diagonal approximation of A^T A. The columns are cut into blocks (each
// layer in `blocks`, split into pieces of `block_size`); each block gets its own greedy
// path (OMP order) on its columns alone; one global budget k is shared across blocks by
// taking the largest marginal decreases of all paths; each block is then solved on its
// own. Blocks are independent: on the CPU they run in parallel.
#include <algorithm>
#include <cmath>
#include <queue>

#include "chita/errors.h"
#include "cpu/parallel.h"  // parallel_chunks, resolve_threads
#include "solvers/quality_methods.h"
#include "solvers/support_model.h"

namespace chita {
namespace {

struct Block {
  std::int64_t begin = 0, end = 0;
  std::vector<std::int64_t> path;  // columns (block-local) in the order greedy added them
  std::vector<double> value;       // objective of the block problem after 0, 1, ... adds
  std::vector<std::int64_t> idx;   // final support (global) and values
  std::vector<float> val;
};

std::vector<Block> cut(const Problem& pb, const SolveOptions& opt) {
  std::vector<std::int64_t> edges{0};
  for (auto e : opt.blocks) {
    CHITA_THROW_IF_NOT(e > edges.back() && e <= pb.A.p, "blocks must be increasing layer "
                       "boundaries in (0, p=", pb.A.p, "]; got ", e, " after ", edges.back());
    edges.push_back(e);
  }
  if (edges.back() != pb.A.p) edges.push_back(pb.A.p);
  CHITA_THROW_IF_NOT(opt.block_size >= 0, "block_size=", opt.block_size, " must be >= 0");
  std::vector<Block> out;
  for (std::size_t l = 0; l + 1 < edges.size(); ++l) {
    const std::int64_t B = opt.block_size > 0 ? opt.block_size : edges[l + 1] - edges[l];
    for (std::int64_t s = edges[l]; s < edges[l + 1]; s += B) {
      Block b;
      b.begin = s, b.end = std::min(s + B, edges[l + 1]);
      out.push_back(std::move(b));
    }
  }
  return out;
}

// The block's own problem: its columns, b = A_blk w_bar_blk, its slice of w_bar / alpha.
struct SubProblem {
  Problem pb;
  Buffer<float> b;
  SubProblem(Backend& be, const Problem& full, const Block& blk, std::int64_t k) {
    pb = full;
    pb.A.data = static_cast<const char*>(full.A.data) + blk.begin * full.A.n * full.A.element_bytes();
    pb.A.p = blk.end - blk.begin;
    pb.w_bar = full.w_bar + blk.begin;
    pb.alpha = full.alpha ? full.alpha + blk.begin : nullptr;
    pb.k = std::max<std::int64_t>(1, std::min(k, pb.A.p));
    auto r = be.alloc_f64(full.A.n);
    b = be.alloc_f32(full.A.n);
    be.ax_dense(pb.A, pb.w_bar, r.data());
    be.f64_to_f32(r.data(), b.data(), full.A.n);
    pb.b = b.data();
  }
};

void grow_path(Backend& be, const Problem& full, const SolveOptions& opt, Block& blk,
               std::int64_t cap, const Stopwatch& clock) {
  SubProblem sub(be, full, blk, cap);
  SupportModel model(be, sub.pb, 1);
  model.reset({});
  blk.value = {model.value()};
  greedy_grow(model, sub.pb.k, 0.0, 0, clock, opt.time_limit, blk.value);
  blk.path = model.support();
}

void finish_block(Backend& be, const Problem& full, Block& blk, std::int64_t kb) {
  if (kb == 0) return;
  SubProblem sub(be, full, blk, kb);
  SupportModel model(be, sub.pb, 1);
  model.reset(std::vector<std::int64_t>(blk.path.begin(), blk.path.begin() + kb));
  model.solution(blk.idx, blk.val);
  for (auto& j : blk.idx) j += blk.begin;
}

// body(block) for every block, in parallel on the CPU (the kernels each block calls then
// run inline on its thread); one at a time on a GPU, whose kernels are the parallel part.
template <typename Body>
void for_blocks(Backend& be, std::vector<Block>& blocks, int threads, Body body) {
  const int t = be.device().kind == Device::cpu ? cpu::resolve_threads(threads) : 1;
  cpu::parallel_chunks(static_cast<std::int64_t>(blocks.size()), t,
                       [&](std::int64_t i) { body(blocks[static_cast<std::size_t>(i)]); });
}

}  // namespace

SolveResult solve_block(Backend& be, const Problem& pb, const SolveOptions& opt) {
  Stopwatch clock;
  CHITA_THROW_IF_NOT(pb.A.layout == Layout::col_major,
                     "method='block' needs A stored column-major (one weight's gradients "
                     "contiguous); pass A in that layout");
  auto blocks = cut(pb, opt);
  const double share = static_cast<double>(pb.k) / static_cast<double>(pb.A.p);
  // Each path goes a little past the block's proportional share of k.
  for_blocks(be, blocks, opt.threads, [&](Block& b) {
    const std::int64_t size = b.end - b.begin;
    const std::int64_t cap = blocks.size() == 1 ? std::min(size, pb.k)
        : std::min(size, 2 * static_cast<std::int64_t>(std::ceil(share * size)) + 16);
    grow_path(be, pb, opt, b, std::min(cap, pb.k), clock);
  });
  // One global budget: repeatedly take the largest next decrease among all paths.
  std::vector<std::int64_t> kb(blocks.size(), 0);
  using Item = std::pair<double, std::size_t>;
  std::priority_queue<Item> heap;
  for (std::size_t i = 0; i < blocks.size(); ++i)
    if (blocks[i].value.size() > 1) heap.push({blocks[i].value[0] - blocks[i].value[1], i});
  for (std::int64_t used = 0; used < pb.k && !heap.empty(); ++used) {
    const auto [gain, i] = heap.top();
    heap.pop();
    const std::size_t t = static_cast<std::size_t>(++kb[i]);
    if (t + 1 < blocks[i].value.size()) heap.push({blocks[i].value[t] - blocks[i].value[t + 1], i});
  }
  std::vector<std::int64_t> kb_of(blocks.size());
  for (std::size_t i = 0; i < blocks.size(); ++i) kb_of[i] = kb[i];
  for_blocks(be, blocks, opt.threads, [&](Block& b) {
    finish_block(be, pb, b, kb_of[static_cast<std::size_t>(&b - blocks.data())]);
  });
  std::vector<std::int64_t> idx;
  std::vector<float> val;
  for (auto& b : blocks) idx.insert(idx.end(), b.idx.begin(), b.idx.end()), val.insert(val.end(), b.val.begin(), b.val.end());
  SolveResult res = make_result(be, pb, idx, val, "block");
  res.history = {res.objective};
  res.iterations = static_cast<int>(blocks.size());
  res.converged = true;
  res.seconds = clock.seconds();
  return res;
}

}  // namespace chita
