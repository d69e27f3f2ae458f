"""Smoke test of an installed wheel, run from outside the source tree (CI): the module
imports without torch, build_info() answers, and solve() agrees with a tiny NumPy ridge
solution on a random problem."""
import json
import sys

import numpy as np

import chita_ext

info = chita_ext.build_info()
print(json.dumps(info))
assert info["threads"] >= 1 and info["available_cpus"] >= info["threads"], info
assert "site-packages" in chita_ext.__file__, chita_ext.__file__  # the wheel, not a checkout

rng = np.random.default_rng(0)
n, p, k, lam = 40, 300, 30, 0.5
A = np.asfortranarray(rng.standard_normal((n, p)).astype(np.float32))
w_bar = rng.standard_normal(p).astype(np.float32)

# bso on the magnitude support = the ridge solution on those columns (float64 NumPy).
res = chita_ext.solve(A, w_bar, k, lam=lam, method="bso")
S = np.sort(np.argsort(-np.abs(w_bar), kind="stable")[:k])
A64, w64 = A.astype(np.float64), w_bar.astype(np.float64)
b = A64 @ w64
AS = A64[:, S]
w_S = np.linalg.solve(AS.T @ AS + lam * np.eye(k), AS.T @ b + lam * w64[S])
expected = np.zeros(p)
expected[S] = w_S
np.testing.assert_allclose(res.w, expected, rtol=0, atol=1e-4 * np.abs(w_S).max())


def objective(w):
    w = np.asarray(w, np.float64)
    return 0.5 * np.sum((b - A64 @ w) ** 2) + 0.5 * lam * np.sum((w - w64) ** 2)


# iht: k-sparse, its reported objective is its w's, and no worse than magnitude + bso.
it = chita_ext.solve(A, w_bar, k, lam=lam, method="iht")
assert np.count_nonzero(it.w) <= k
assert abs(it.objective - objective(it.w)) <= 1e-4 * objective(it.w), (it.objective, objective(it.w))
assert it.objective <= objective(expected) * (1 + 1e-6)
assert "torch" not in sys.modules
print(f"smoke test passed: bso matches NumPy, iht objective {it.objective:.6g} "
      f"<= magnitude + bso {objective(expected):.6g}")
