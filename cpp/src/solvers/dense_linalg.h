// Small dense float64 linear algebra on the host: the n x n (or k x k) backsolve systems.
#pragma once
#include <cstdint>
#include <vector>

namespace chita {

// In place: the lower triangle of the row-major m x m matrix `a` becomes L with
// a = L L^T. Returns false if `a` is not (numerically) positive definite.
bool cholesky(std::vector<double>& a, std::int64_t m, int threads);

// Solves L L^T x = rhs in place, L from cholesky().
void cholesky_solve(const std::vector<double>& L, std::int64_t m, std::vector<double>& rhs);

// Factors a + jitter I, raising jitter from 0 until it succeeds: ridge systems with lam = 0
// can be semi-definite. Returns the jitter used; throws InvalidArgument (-> ValueError) when
// even the largest jitter fails, which bad input causes (NaN/Inf in A, lam = 0).
double cholesky_with_jitter(std::vector<double>& a, std::int64_t m, int threads);

}  // namespace chita
