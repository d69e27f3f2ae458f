// Hand-vectorised column kernels for x86-64 CPUs with AVX2 and FMA, chosen at run time.
// The plain loops in atr.cpp and ax.cpp remain the portable fallback and the reference.
#pragma once
#include <cstdint>

namespace chita::cpu::avx2 {

// True when this CPU runs the kernels below (AVX2 and FMA).
bool available();

// out[t] = dot(column idx[t] (or t), r) for t in [begin, end); columns of n floats.
void atr_f32(const float* a, std::int64_t n, const float* r, const std::int64_t* idx,
             std::int64_t begin, std::int64_t end, float* out);

// The same for bfloat16 columns read as n/2 32-bit words (n even, columns 4-byte aligned);
// r_even[i] = r[2i], r_odd[i] = r[2i+1].
void atr_bf16_pairs(const std::uint16_t* a, std::int64_t n, const float* r_even,
                    const float* r_odd, const std::int64_t* idx, std::int64_t begin,
                    std::int64_t end, float* out);

// acc[0..n) += sum over t in [begin, end) of x[t] * column(idx[t] or t), in float64.
void axpy_f32(const float* a, std::int64_t n, const std::int64_t* idx, const float* x,
              std::int64_t begin, std::int64_t end, double* acc);
void axpy_bf16(const std::uint16_t* a, std::int64_t n, const std::int64_t* idx, const float* x,
               std::int64_t begin, std::int64_t end, double* acc);

}  // namespace chita::cpu::avx2
