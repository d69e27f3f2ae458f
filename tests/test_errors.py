"""Bad input: a clear TypeError/ValueError naming the fix, before any work."""
from __future__ import annotations

import numpy as np
import pytest

import chita_ext

from conftest import make_instance


@pytest.fixture
def problem():
    return make_instance("gaussian", 10, 40, seed=0)


def test_wrong_dtype(problem):
    A, w_bar = problem
    with pytest.raises(TypeError, match="dtype float64; pass float32 or bfloat16"):
        chita_ext.solve(A.astype(np.float64), w_bar, 5, lam=1.0)
    with pytest.raises(TypeError, match="dtype complex"):
        chita_ext.solve(A, w_bar.astype(np.complex64), 5, lam=1.0)


def test_wrong_shapes(problem):
    A, w_bar = problem
    with pytest.raises(ValueError, match="2-D"):
        chita_ext.solve(A[0], w_bar, 5, lam=1.0)
    with pytest.raises(ValueError, match=r"w_bar must have shape \(40,\)"):
        chita_ext.solve(A, w_bar[:-1], 5, lam=1.0)
    with pytest.raises(ValueError, match=r"b must have shape \(10,\)"):
        chita_ext.solve(A, w_bar, 5, lam=1.0, b=np.zeros(9))
    with pytest.raises(ValueError, match="alpha must have shape"):
        chita_ext.solve(A, w_bar, 5, lam=1.0, alpha=np.zeros(41))
    with pytest.raises(ValueError, match="not contiguous"):
        chita_ext.solve(np.asfortranarray(np.zeros((10, 80), np.float32))[:, ::2], w_bar, 5,
                        lam=1.0)


@pytest.mark.parametrize("where", ["A", "w_bar", "b", "alpha", "w0"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite(problem, where, bad):
    A, w_bar = problem
    A, w_bar = A.copy(order="F"), w_bar.copy()
    kw = {"b": A @ w_bar, "alpha": np.zeros(40, np.float32), "w0": w_bar.copy()}
    if where == "A":
        A[3, 7] = bad
    elif where == "w_bar":
        w_bar[5] = bad
    else:
        kw[where][2] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        chita_ext.solve(A, w_bar, 5, lam=1.0, **kw)


def test_bad_scalars(problem):
    A, w_bar = problem
    with pytest.raises(ValueError, match=r"k=0 must be in \[1, p=40\]"):
        chita_ext.solve(A, w_bar, 0, lam=1.0)
    with pytest.raises(ValueError, match=r"k=41 must be in \[1, p=40\]"):
        chita_ext.solve(A, w_bar, 41, lam=1.0)
    with pytest.raises(TypeError, match="k must be an int"):
        chita_ext.solve(A, w_bar, 4.5, lam=1.0)
    for lam in (-1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="lam="):
            chita_ext.solve(A, w_bar, 5, lam=lam)
    with pytest.raises(ValueError, match="unknown method 'ihtt'; choose one of mp, bso, iht"):
        chita_ext.solve(A, w_bar, 5, lam=1.0, method="ihtt")
    with pytest.raises(ValueError, match="threads=0"):
        chita_ext.solve(A, w_bar, 5, lam=1.0, threads=0)
    with pytest.raises(ValueError, match="max_iter"):
        chita_ext.solve(A, w_bar, 5, lam=1.0, max_iter=-1)
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        chita_ext.solve(A.tolist(), w_bar, 5, lam=1.0)


def test_lam_zero_with_alpha_and_large_k(problem):
    A, w_bar = problem
    with pytest.raises(ValueError, match="pass lam > 0"):
        chita_ext.solve(A, w_bar, 20, lam=0.0, alpha=np.ones(40), method="bso")


def test_cuda_inputs_in_a_cpu_only_build_or_mixed_devices(problem):
    torch = pytest.importorskip("torch")
    A, w_bar = problem
    if chita_ext.cuda_device_count() == 0 and not torch.cuda.is_available():
        # No GPU here: a CUDA descriptor must fail with the documented message, not crash.
        from chita_ext import _core

        info = chita_ext.build_info()
        if not info["cuda"]:
            with pytest.raises(RuntimeError, match="built without CUDA; reinstall with"):
                _core.Backend("cuda", 0, 0, 0)
        return
    with pytest.raises(ValueError, match="A is on the CPU"):
        chita_ext.solve(A, torch.from_numpy(w_bar).cuda(), 5, lam=1.0)


def test_errors_do_not_touch_inputs(problem):
    A, w_bar = problem
    A0, w0 = A.copy(), w_bar.copy()
    with pytest.raises(ValueError):
        chita_ext.solve(A, w_bar, 0, lam=1.0)
    np.testing.assert_array_equal(A, A0)
    np.testing.assert_array_equal(w_bar, w0)


@pytest.mark.parametrize("shape", [(0, 40), (10, 0), (0, 0)])
def test_empty_matrix_says_it_is_empty(shape):
    for order in ("F", "C"):
        A = np.zeros(shape, np.float32, order=order)
        with pytest.raises(ValueError, match=rf"A is empty: shape \({shape[0]}, {shape[1]}\)"):
            chita_ext.solve(A, np.zeros(shape[1], np.float32), 1, lam=1.0)
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="A is empty"):
        chita_ext.solve(torch.zeros(shape), np.zeros(shape[1], np.float32), 1, lam=1.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("k", [5, 20])  # k > n: every method backsolves through Woodbury
def test_non_finite_A_unchecked_is_a_user_error_not_an_internal_one(problem, bad, k):
    A, w_bar = problem
    A = A.copy(order="F")
    b = A @ w_bar
    A[3, 7] = bad
    for method in chita_ext.METHODS:  # garbage in, but never a RuntimeError
        try:
            chita_ext.solve(A, w_bar, k, lam=1.0, b=b, method=method, check_finite=False,
                            max_iter=10)
        except ValueError as exc:  # the backsolve could not be factored
            msg = str(exc)
            assert "NaN or Inf" in msg and "check_finite=True" in msg and "lam > 0" in msg
            assert "internal error" not in msg and "/" not in msg.replace("w/", "")
    if k > A.shape[0]:  # the symptom of the issue: the Woodbury factorisation fails
        with pytest.raises(ValueError, match="NaN or Inf.*check_finite=True.*pass lam > 0"):
            chita_ext.solve(A, w_bar, k, lam=1.0, b=b, method="bso", check_finite=False)
