"""Swap local search: closed-form move values agree with direct re-evaluation."""
from __future__ import annotations

import numpy as np
import pytest

import chita_ext
import reference as ref
from conftest import make_instance


@pytest.mark.parametrize("kind", ["gaussian", "correlated", "heavy"])
def test_closed_form_values_match_direct_evaluation(kind):
    # history holds the n-space (Woodbury, rank-1 updated) values of the accepted moves: the
    # exact optimum on the support, which a float64 backsolve reproduces (up to b being
    # float32 in the solver). The reported objective is evaluated directly on the returned
    # float32 w, so it can sit a little above that optimum where rounding w matters.
    A, w_bar = make_instance(kind, 24, 160, 2)
    lam, k = 0.1, 30
    wb = w_bar.astype(np.float64)
    for rounds in (1, 2, 5):
        r = chita_ext.solve(A, w_bar, k, lam=lam, method="swap", swap_rounds=rounds)
        optimum = ref.objective(A, ref.backsolve(A, r.support, w_bar, lam), wb, lam)
        assert r.history[-1] == pytest.approx(optimum, rel=1e-6)  # b is float32
        direct = ref.objective(A, r.w.astype(np.float64), wb, lam)
        assert r.objective == pytest.approx(direct, rel=1e-7)
        assert optimum <= direct * (1 + 1e-12)


def test_swaps_improve_magnitude_pruning():
    A, w_bar = make_instance("correlated", 30, 300, 4)
    lam, k = 0.05, 20
    bso = chita_ext.solve(A, w_bar, k, lam=lam, method="bso")
    swap = chita_ext.solve(A, w_bar, k, lam=lam, method="swap")
    assert swap.objective <= bso.objective * (1 + 1e-6)
    assert swap.history[0] == pytest.approx(bso.objective, rel=1e-5)


def test_swap_size_options():
    A, w_bar = make_instance("heavy", 20, 120, 6)
    a = chita_ext.solve(A, w_bar, 12, lam=0.1, method="swap", swap_size=1)
    b = chita_ext.solve(A, w_bar, 12, lam=0.1, method="swap", swap_size=6)
    assert a.nnz <= 12 and b.nnz <= 12
    with pytest.raises(ValueError, match="swap_size"):
        chita_ext.solve(A, w_bar, 12, lam=0.1, method="swap", swap_size=-1)


def test_greedy_one_at_a_time_is_omp_order():
    # rate 0 = one column per pass, chosen by the largest |gradient| (OMP's rule).
    pytest.importorskip("sklearn")
    from sklearn.linear_model import orthogonal_mp_gram

    A, w_bar = make_instance("gaussian", 30, 80, 9)
    lam, k = 0.5, 10
    A64, wb = A.astype(np.float64), w_bar.astype(np.float64)
    G = A64.T @ A64 + lam * np.eye(80)
    coef = orthogonal_mp_gram(G, G @ wb, n_nonzero_coefs=k)
    r = chita_ext.solve(A, w_bar, k, lam=lam, method="greedy", greedy_rate=0)
    assert set(np.flatnonzero(coef)) == set(r.support)
