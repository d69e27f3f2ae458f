"""Small dense float64 systems on the host: cpp/src/solvers/dense_linalg.cpp in torch.

Every rank factors the same all-reduced matrix with the same code, so every rank gets the
same factor.
"""
from __future__ import annotations

import torch


def cholesky_with_jitter(a: torch.Tensor) -> torch.Tensor:
    """Lower Cholesky factor of ``a + jitter I`` (float64, CPU), raising jitter from 0 by
    factors of 10 from ``1e-12 * trace / m`` until it factors (ridge systems with lam = 0
    can be semi-definite), as the C++ backsolve does."""
    m = a.shape[0]
    trace = float(torch.diagonal(a).sum())
    scale = trace / m if trace > 0 else 1.0
    jitter = 0.0
    for _ in range(12):
        shifted = a if jitter == 0.0 else a + jitter * torch.eye(m, dtype=a.dtype)
        L, info = torch.linalg.cholesky_ex(shifted)
        if int(info) == 0 and bool(torch.isfinite(L).all()):
            return L
        jitter = 1e-12 * scale if jitter == 0.0 else jitter * 10.0
    raise RuntimeError("Gram matrix could not be factored even with jitter (a bug: please "
                       "report it with the problem sizes)")


def cholesky_solve(L: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """x with ``L L^T x = rhs`` (rhs a vector)."""
    return torch.cholesky_solve(rhs.reshape(-1, 1), L).reshape(-1)
