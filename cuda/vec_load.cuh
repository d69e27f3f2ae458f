// Internal to cuda/ (device code only): element access and 16-byte vector unpacking for the
// two storage dtypes of A. float32 -> float; bfloat16 (stored as uint16_t) -> float.
#pragma once
#include <cstdint>

#include "device_math.h"  // bf16_bits_to_float

namespace chita::cuda_impl::detail {

template <typename T>
struct Elem;

template <>
struct Elem<float> {
  static constexpr int kPerVec = 4;  // per 16-byte load
  __device__ __forceinline__ static float get(float v) { return v; }
  __device__ __forceinline__ static void unpack(const uint4& v, float (&f)[kPerVec]) {
    f[0] = __uint_as_float(v.x);
    f[1] = __uint_as_float(v.y);
    f[2] = __uint_as_float(v.z);
    f[3] = __uint_as_float(v.w);
  }
};

template <>
struct Elem<std::uint16_t> {
  static constexpr int kPerVec = 8;
  __device__ __forceinline__ static float get(std::uint16_t h) {
    return cuda_math::bf16_bits_to_float(h);
  }
  // Little endian: element 2q is the low half of word q.
  __device__ __forceinline__ static void unpack(const uint4& v, float (&f)[kPerVec]) {
    const unsigned w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      f[2 * q] = __uint_as_float(w[q] << 16);
      f[2 * q + 1] = __uint_as_float(w[q] & 0xffff0000u);
    }
  }
};

}  // namespace chita::cuda_impl::detail
