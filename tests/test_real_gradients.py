"""Real per-sample gradients (MLP on sklearn digits): auto beats IHT and OMP."""
from __future__ import annotations

import numpy as np
import pytest

import chita_ext


@pytest.mark.parametrize("sparsity", [0.9, 0.95])
def test_auto_at_least_as_good_as_omp_and_iht(digits_gradients, sparsity):
    from sklearn.linear_model import orthogonal_mp_gram

    A, w_bar = digits_gradients
    n, p = A.shape
    lam = 1e-3 * float(np.sum(A.astype(np.float64) ** 2)) / p
    k = int(round((1 - sparsity) * p))
    A64, wb = A.astype(np.float64), w_bar.astype(np.float64)
    G = A64.T @ A64 + lam * np.eye(p)
    coef = orthogonal_mp_gram(G, G @ wb, n_nonzero_coefs=k)
    S = np.flatnonzero(coef)
    omp = chita_ext.solve(A, w_bar, len(S), lam=lam, method="bso",
                          w0=np.where(coef != 0, 1.0, 0.0).astype(np.float32))
    auto = chita_ext.solve(A, w_bar, k, lam=lam, method="auto")
    iht = chita_ext.solve(A, w_bar, k, lam=lam, method="iht")
    assert auto.objective <= omp.objective * (1 + 1e-4)
    assert auto.objective <= iht.objective * (1 + 1e-4)
