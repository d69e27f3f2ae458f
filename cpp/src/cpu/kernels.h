// CPU kernels (OpenMP + SIMD). CpuBackend (cpu_backend.cpp) forwards to these.
#pragma once
#include <cstdint>

#include "chita/backend.h"  // GradientTerms
#include "chita/matrix_view.h"

namespace chita::cpu {

void atr(const MatrixView& A, const float* r, float* out, int threads);
void atr_subset(const MatrixView& A, const float* r, const std::int64_t* idx, std::int64_t k,
                float* out, int threads);
// idx == nullptr means the identity (all p columns, x of length p).
void ax(const MatrixView& A, const std::int64_t* idx, const float* x, std::int64_t k,
        double* out, int threads);
// Backend::gradient_on_support, fused: one pass over column-major A.
void gradient_on_support(const MatrixView& A, const float* r, const GradientTerms& terms,
                         const std::int64_t* idx, std::int64_t k, float* g, float* g_s,
                         double* a_g_s, int threads);
void gram_rows(const MatrixView& A, const std::int64_t* idx, std::int64_t k, double* out,
               int threads);
void gram_cols(const MatrixView& A, const std::int64_t* idx, std::int64_t k, double* out,
               int threads);
void topk_abs(const float* x, std::int64_t m, std::int64_t k, std::int64_t* idx_out,
              int threads);
// True when no element of A is NaN or +-Inf.
bool all_finite(const MatrixView& A, int threads);

}  // namespace chita::cpu
