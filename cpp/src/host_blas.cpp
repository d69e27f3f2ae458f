#include "host_blas.h"

namespace chita::blas {

#define CHITA_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))

CHITA_CLONES double dot(const double* x, const double* y, std::int64_t m) {
  constexpr int kLanes = 16;
  double acc[kLanes] = {};
  std::int64_t t = 0;
  for (; t + kLanes <= m; t += kLanes) {
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) acc[l] += x[t + l] * y[t + l];
  }
  for (int width = kLanes / 2; width >= 1; width /= 2)  // pairwise, in a fixed order
    for (int l = 0; l < width; ++l) acc[l] += acc[l + width];
  double s = acc[0];
  for (; t < m; ++t) s += x[t] * y[t];
  return s;
}

CHITA_CLONES void axpy(double a, const double* x, double* y, std::int64_t m) {
#pragma omp simd
  for (std::int64_t t = 0; t < m; ++t) y[t] += a * x[t];
}

CHITA_CLONES void rotate_column(double* col, double* x, std::int64_t m, double sign, double cs,
                                double sn) {
  const double inv_cs = 1.0 / cs, ssn = sign * sn;
#pragma omp simd
  for (std::int64_t i = 0; i < m; ++i) {
    const double c = (col[i] + ssn * x[i]) * inv_cs;
    col[i] = c;
    x[i] = cs * x[i] - sn * c;
  }
}

}  // namespace chita::blas
