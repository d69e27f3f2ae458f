// Factory for the CPU backend (the class itself stays private to cpu_backend.cpp).
#pragma once
#include <memory>

#include "chita/backend.h"

namespace chita::cpu {
std::unique_ptr<Backend> make_cpu_backend(int threads);
}  // namespace chita::cpu
