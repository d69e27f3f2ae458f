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

CHITA_CLONES void dot_2x4(const double* x0, const double* x1, const double* const y[4],
                          std::int64_t m, double out[8]) {
  const double *y0 = y[0], *y1 = y[1], *y2 = y[2], *y3 = y[3];
  double acc[8][4] = {};
  std::int64_t t = 0;
  for (; t + 4 <= m; t += 4) {
#pragma omp simd
    for (int l = 0; l < 4; ++l) {
      const double u0 = x0[t + l], u1 = x1[t + l];
      const double v0 = y0[t + l], v1 = y1[t + l], v2 = y2[t + l], v3 = y3[t + l];
      acc[0][l] += u0 * v0, acc[1][l] += u0 * v1, acc[2][l] += u0 * v2, acc[3][l] += u0 * v3;
      acc[4][l] += u1 * v0, acc[5][l] += u1 * v1, acc[6][l] += u1 * v2, acc[7][l] += u1 * v3;
    }
  }
  for (int o = 0; o < 8; ++o) {
    const double* u = o < 4 ? x0 : x1;
    const double* v = y[o % 4];
    double s = (acc[o][0] + acc[o][1]) + (acc[o][2] + acc[o][3]);
    for (std::int64_t r = t; r < m; ++r) s += u[r] * v[r];
    out[o] = s;
  }
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
