// Input check: is every element of A finite? One streaming pass, run once per solve.
#include <atomic>
#include <cstdint>
#include <cstring>

#include "cpu/element.h"
#include "cpu/kernels.h"
#include "cpu/parallel.h"

namespace chita::cpu {
namespace {

// Exponent bits all ones <=> NaN or Inf, for float32 and bfloat16 alike.
inline bool finite_bits(float v) {
  std::uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return (bits & 0x7f800000u) != 0x7f800000u;
}

}  // namespace

bool all_finite(const MatrixView& A, int threads) {
  std::atomic<bool> ok{true};
  with_element(A.dtype == DType::bf16, [&](auto e) {
    using E = decltype(e);
    const auto* a = static_cast<const typename E::Stored*>(A.data);
    const double bytes = static_cast<double>(A.n) * A.p * A.element_bytes();
    parallel_ranges(A.n * A.p, 1 << 20, threads, bytes, [&](std::int64_t b, std::int64_t end) {
      if (!ok.load(std::memory_order_relaxed)) return;
      bool chunk_ok = true;
      for (std::int64_t i = b; i < end; ++i) chunk_ok &= finite_bits(E::load(a, i));
      if (!chunk_ok) ok = false;
    });
  });
  return ok;
}

}  // namespace chita::cpu
