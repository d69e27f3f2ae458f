// Reading one stored element of A as float32, for each storage dtype.
#pragma once
#include <cstdint>
#include <cstring>

namespace chita::cpu {

struct F32 {
  using Stored = float;
  static inline float load(const float* p, std::int64_t i) { return p[i]; }
};

struct BF16 {
  using Stored = std::uint16_t;
  static inline float load(const std::uint16_t* p, std::int64_t i) {
    std::uint32_t bits = static_cast<std::uint32_t>(p[i]) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  }
};

// Calls fn.template operator()<F32 or BF16>() for the view's dtype.
template <typename Fn>
auto with_element(bool is_bf16, Fn&& fn) {
  return is_bf16 ? fn(BF16{}) : fn(F32{});
}

}  // namespace chita::cpu
