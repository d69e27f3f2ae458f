// Float64 vector primitives for the host-side dense linear algebra (Gram matrices,
// Cholesky factors and their updates). Each has an x86-64-v3 (AVX2 + FMA) clone picked at
// run time by CPU features; each sums in one fixed order, so results never depend on the
// number of threads.
#pragma once
#include <cstdint>

namespace chita::blas {

// sum_t x[t] * y[t], with 16 independent partial sums (the single running sum that plain
// loops keep is latency-bound at a quarter of the machine's throughput).
double dot(const double* x, const double* y, std::int64_t m);

// The eight dot products of x0, x1 with y0..y3: out[4 a + b] = x_a . y_b.
// Loads each y once for two rows, which a Gram matrix of n x n dot products needs to run
// at arithmetic rather than load speed.
void dot_2x4(const double* x0, const double* x1, const double* const y[4], std::int64_t m,
             double out[8]);

// y[t] += a * x[t].
void axpy(double a, const double* x, double* y, std::int64_t m);

// One column of a Cholesky rank-1 update (sign +1) or downdate (sign -1) by a rotation:
// col = (col + sign * sn * x) / cs, then x = cs * x - sn * col.
void rotate_column(double* col, double* x, std::int64_t m, double sign, double cs, double sn);

}  // namespace chita::blas
