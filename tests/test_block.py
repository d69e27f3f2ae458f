"""Block-diagonal method."""
from __future__ import annotations

import numpy as np
import pytest

import chita_ext
from conftest import make_instance


def test_one_block_equals_unblocked_greedy():
    A, w_bar = make_instance("heavy", 20, 150, 1)
    lam, k = 0.1, 15
    blk = chita_ext.solve(A, w_bar, k, lam=lam, method="block")
    gr = chita_ext.solve(A, w_bar, k, lam=lam, method="greedy", greedy_rate=0)
    np.testing.assert_array_equal(blk.support, gr.support)
    np.testing.assert_allclose(blk.w, gr.w, rtol=1e-5, atol=1e-7)
    assert blk.objective == pytest.approx(gr.objective, rel=1e-6)


def test_layers_and_block_size_share_one_budget():
    A, w_bar = make_instance("correlated", 20, 300, 2)
    lam, k = 0.1, 40
    r = chita_ext.solve(A, w_bar, k, lam=lam, method="block", blocks=[100, 300], block_size=50)
    assert r.nnz <= k and len(r.support) == k
    serial = chita_ext.solve(A, w_bar, k, lam=lam, method="block", blocks=[100, 300],
                             block_size=50, threads=1)
    np.testing.assert_array_equal(r.support, serial.support)
    mp = chita_ext.solve(A, w_bar, k, lam=lam, method="mp")
    assert r.objective <= mp.objective


def test_bad_blocks_raise():
    A, w_bar = make_instance("gaussian", 10, 50, 3)
    with pytest.raises(ValueError, match="blocks"):
        chita_ext.solve(A, w_bar, 5, lam=0.1, method="block", blocks=[30, 20])
