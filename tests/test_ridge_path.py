"""RidgePath: one prepared support, many lam, against bso and a float64 reference."""
import numpy as np
import pytest

import chita_ext
import reference as ref
from chita_ext.ridge_path import RidgePath
from conftest import make_instance


@pytest.mark.parametrize("n, p, k", [(40, 300, 25), (40, 300, 120)])  # k <= n, Woodbury
@pytest.mark.parametrize("with_alpha", [False, True])
def test_matches_bso_and_the_float64_reference(n, p, k, with_alpha):
    A, w_bar = make_instance("correlated", n, p, seed=n + k)
    rng = np.random.default_rng(k)
    alpha = (0.1 * rng.standard_normal(p)).astype(np.float32) if with_alpha else None
    path = RidgePath(A, w_bar, k, alpha=alpha)
    scale = float((A.astype(np.float64) ** 2).sum()) / p
    for rel in (1e-3, 1e-1, 10.0):
        lam = rel * scale
        got = path.solve(lam)
        bso = chita_ext.solve(A, w_bar, k, lam=lam, alpha=alpha, method="bso")
        np.testing.assert_array_equal(got.support, bso.support)
        np.testing.assert_allclose(got.w, bso.w, rtol=1e-5, atol=1e-6)
        assert got.objective == pytest.approx(bso.objective, rel=1e-9)
        want = ref.backsolve(A, got.support, w_bar.astype(np.float64), lam,
                             alpha=None if alpha is None else alpha.astype(np.float64))
        np.testing.assert_allclose(got.w, want, rtol=2e-3, atol=2e-4)
        assert got.objective == pytest.approx(
            ref.objective(A, got.w.astype(np.float64), w_bar.astype(np.float64), lam,
                          alpha=None if alpha is None else alpha.astype(np.float64)), rel=1e-4)


def test_given_support_bf16_and_digits(digits_gradients):
    import ml_dtypes
    A, w_bar = digits_gradients
    S = np.sort(np.random.default_rng(0).choice(A.shape[1], 150, replace=False))
    path = RidgePath(A, w_bar, support=S)
    w0 = np.zeros(A.shape[1], np.float32)
    w0[S] = 1.0
    lam = 1e-2 * float((A.astype(np.float64) ** 2).sum()) / A.shape[1]
    bso = chita_ext.solve(A, w_bar, len(S), lam=lam, method="bso", w0=w0)
    assert path.solve(lam).objective == pytest.approx(bso.objective, rel=1e-9)
    A16 = np.asfortranarray(A.astype(ml_dtypes.bfloat16))
    p16 = RidgePath(A16, w_bar, support=S)
    b16 = chita_ext.solve(A16, w_bar, len(S), lam=lam, method="bso", w0=w0)
    assert p16.solve(lam).objective == pytest.approx(b16.objective, rel=1e-9)


def test_bad_input():
    A, w_bar = make_instance("gaussian", 10, 50, seed=0)
    with pytest.raises(ValueError, match="pass k"):
        RidgePath(A, w_bar)
    with pytest.raises(ValueError, match="k=0"):
        RidgePath(A, w_bar, 0)
    with pytest.raises(ValueError, match="strictly increasing"):
        RidgePath(A, w_bar, support=[3, 3, 5])
    with pytest.raises(ValueError, match="strictly increasing"):
        RidgePath(A, w_bar, support=[1, 50])
    with pytest.raises(ValueError, match="lam"):
        RidgePath(A, w_bar, 5).solve(-1.0)
    bad = A.copy(order="F")
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        RidgePath(bad, w_bar, 5)
