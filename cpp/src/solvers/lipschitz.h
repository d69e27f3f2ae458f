// L = ||A||_2^2 + lam by power iteration: the 1/L fallback step of IHT.
#pragma once
#include "chita/backend.h"
#include "chita/problem.h"

namespace chita {
double lipschitz_constant(Backend& be, const Problem& pb, int power_iters);
}  // namespace chita
