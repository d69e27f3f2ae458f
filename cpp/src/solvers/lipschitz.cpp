#include "solvers/lipschitz.h"

#include <cmath>
#include <vector>

namespace chita {

double lipschitz_constant(Backend& be, const Problem& pb, int power_iters) {
  const std::int64_t n = pb.A.n, p = pb.A.p;
  // Deterministic, non-degenerate start: a fixed pseudo-random +-1 pattern.
  std::vector<float> start(static_cast<std::size_t>(p));
  std::uint32_t state = 2463534242u;
  for (auto& v : start) {
    state ^= state << 13, state ^= state >> 17, state ^= state << 5;
    v = (state & 1u) ? 1.0f : -1.0f;
  }
  auto v = be.alloc_f32(p), z = be.alloc_f32(p), u32 = be.alloc_f32(n);
  auto u = be.alloc_f64(n);
  be.to_device(v.data(), start.data(), p * 4);
  double v_norm = std::sqrt(be.dot(v.data(), v.data(), p));
  double estimate = 0.0;
  for (int it = 0; it < power_iters && v_norm > 0; ++it) {
    be.axpby(static_cast<float>(1.0 / v_norm), v.data(), 0.0f, v.data(), v.data(), p);
    be.ax_dense(pb.A, v.data(), u.data());  // u = A v
    be.f64_to_f32(u.data(), u32.data(), n);
    be.atr(pb.A, u32.data(), z.data());     // z = A^T A v
    estimate = std::sqrt(be.dot(z.data(), z.data(), p));
    std::swap(v, z);
    v_norm = estimate;
  }
  // Power iteration approaches ||A||^2 from below: a small margin keeps 1/L a safe step.
  return 1.02 * estimate + pb.lam;
}

}  // namespace chita
