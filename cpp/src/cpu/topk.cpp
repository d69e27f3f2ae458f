// Exact top-k by magnitude in O(m): radix histogram on the high bits of |x|, then an
// exact selection inside the one boundary bucket, then a compaction in index order.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "chita/errors.h"
#include "cpu/kernels.h"
#include "cpu/parallel.h"

namespace chita::cpu {
namespace {

constexpr int kBucketShift = 16;  // 65536 buckets over the top 16 bits of |x|
constexpr std::int64_t kBuckets = std::int64_t{1} << (32 - kBucketShift);

// |x| as ordered unsigned bits: for non-negative floats, the bit order is the value order.
inline std::uint32_t abs_key(float v) {
  std::uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return bits & 0x7fffffffu;
}

struct Candidate {
  std::uint32_t key;
  std::int64_t index;
};

// The "greater" order: larger magnitude first, then smaller index.
inline bool ranks_before(const Candidate& a, const Candidate& b) {
  return a.key != b.key ? a.key > b.key : a.index < b.index;
}

}  // namespace

void topk_abs(const float* x, std::int64_t m, std::int64_t k, std::int64_t* idx_out,
              int threads) {
  CHITA_ASSERT(k >= 1 && k <= m);
  const std::int64_t grain = std::max<std::int64_t>(1 << 16, (m + threads - 1) / threads);
  const std::int64_t ranges = (m + grain - 1) / grain;
  const double bytes = 4.0 * static_cast<double>(m);  // each pass reads x once

  // 1. Histogram of the high bits, one per range, merged.
  std::vector<std::int64_t> hist(static_cast<std::size_t>(ranges * kBuckets), 0);
  parallel_ranges(m, grain, threads, bytes, [&](std::int64_t b, std::int64_t e) {
    std::int64_t* h = &hist[(b / grain) * kBuckets];
    for (std::int64_t j = b; j < e; ++j) ++h[abs_key(x[j]) >> kBucketShift];
  });
  for (std::int64_t r = 1; r < ranges; ++r)
    for (std::int64_t bkt = 0; bkt < kBuckets; ++bkt) hist[bkt] += hist[r * kBuckets + bkt];

  // 2. The boundary bucket: everything above it is in, `need` entries of it are in.
  std::int64_t above = 0, boundary = kBuckets - 1;
  for (; boundary >= 0; --boundary) {
    if (above + hist[boundary] >= k) break;
    above += hist[boundary];
  }
  const std::int64_t need = k - above;

  // 3. One parallel pass per range: entries above the boundary bucket are counted, the
  //    boundary bucket's entries gathered in index order; then the exact rank among those.
  const auto boundary_key = static_cast<std::uint32_t>(boundary);
  std::vector<std::int64_t> count(static_cast<std::size_t>(ranges), 0);
  std::vector<std::vector<Candidate>> range_cand(static_cast<std::size_t>(ranges));
  parallel_ranges(m, grain, threads, bytes, [&](std::int64_t b, std::int64_t e) {
    std::int64_t c = 0;
    auto& mine = range_cand[b / grain];
    for (std::int64_t j = b; j < e; ++j) {
      const std::uint32_t key = abs_key(x[j]);
      c += (key >> kBucketShift) > boundary_key;
      if ((key >> kBucketShift) == boundary_key) mine.push_back({key, j});
    }
    count[b / grain] = c;
  });
  std::vector<Candidate> cand;
  cand.reserve(static_cast<std::size_t>(hist[boundary]));
  for (const auto& mine : range_cand) cand.insert(cand.end(), mine.begin(), mine.end());
  std::vector<Candidate> ranked(cand);
  std::nth_element(ranked.begin(), ranked.begin() + (need - 1), ranked.end(), ranks_before);
  const Candidate last = ranked[need - 1];  // the k-th entry overall

  // 4. Compaction in index order: in iff it ranks at or before the k-th entry. A range's
  //    output count is its count above the boundary bucket plus its selected candidates.
  for (const Candidate& c : cand) count[c.index / grain] += !ranks_before(last, c);
  std::vector<std::int64_t> offset(static_cast<std::size_t>(ranges), 0);
  for (std::int64_t r = 1; r < ranges; ++r) offset[r] = offset[r - 1] + count[r - 1];
  CHITA_ASSERT(offset[ranges - 1] + count[ranges - 1] == k);
  parallel_ranges(m, grain, threads, bytes, [&](std::int64_t b, std::int64_t e) {
    std::int64_t o = offset[b / grain];
    const std::int64_t end_o = o + count[b / grain];
    // Branch-free: write every index, advance only past selected ones (the selection is
    // data-dependent, so a branch mispredicts often); the last slot is guarded.
    for (std::int64_t j = b; j < e && o < end_o; ++j) {
      const std::uint32_t key = abs_key(x[j]);
      idx_out[o] = j;
      o += !ranks_before(last, Candidate{key, j});
    }
  });
}

}  // namespace chita::cpu
