// Non-owning views of the gradient matrix A (n x p) and of the device it lives on.
#pragma once
#include <cstdint>

namespace chita {

enum class DType { f32, bf16 };
enum class Layout { col_major, row_major };  // col_major: each weight's n values contiguous
enum class Device { cpu, cuda };

struct DeviceRef {
  Device kind = Device::cpu;
  int index = 0;             // CUDA ordinal; 0 on the CPU
  std::uintptr_t stream = 0; // cudaStream_t as an integer; 0 = legacy default stream
};

// A is read-only for every kernel. Element (i, j) lives at
//   col_major: data[j * n + i]      row_major: data[i * p + j]
// bf16 elements are the upper 16 bits of an IEEE float32.
struct MatrixView {
  const void* data = nullptr;
  std::int64_t n = 0;
  std::int64_t p = 0;
  DType dtype = DType::f32;
  Layout layout = Layout::col_major;
  DeviceRef device;

  std::int64_t element_bytes() const { return dtype == DType::f32 ? 4 : 2; }
  std::int64_t bytes() const { return n * p * element_bytes(); }
};

inline float bf16_to_float(std::uint16_t h) {
  std::uint32_t bits = static_cast<std::uint32_t>(h) << 16;
  float f;
  __builtin_memcpy(&f, &bits, sizeof f);
  return f;
}

}  // namespace chita
