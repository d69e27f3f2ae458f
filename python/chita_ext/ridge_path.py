"""RidgePath: the exact ridge solution on one fixed support, for as many lam as you like.

The lam search of :func:`chita_ext.prune` solves the same support for several lam values.
Everything that does not depend on lam (the Gram matrix of the support, the residual of
``w_bar`` restricted to it, the right-hand side) is computed once when the path is built;
each :meth:`RidgePath.solve` then costs one Cholesky factorisation (k x k, or n x n by
Woodbury when k > n) and one product with the support's columns.
"""
from __future__ import annotations

import numpy as np

from . import _arrays, _core, kernels
from .result import SolveResult
from .solve import _check_scalar_args, default_b


class RidgePath:
    """Exact ridge solutions ``argmin f(w)`` over w supported on a fixed set S.

    Parameters
    ----------
    A : numpy.ndarray or torch.Tensor, shape (n, p)
        As for :func:`chita_ext.solve` (float32 or bfloat16, never copied).
    w_bar : array_like, shape (p,)
    k : int
        Support size; with ``support=None`` the support is the k largest ``|w_bar|``.
    support : array_like of int, optional
        The support S (sorted, distinct indices in [0, p)); its length overrides ``k``.
    b, alpha : array_like, optional
        As for :func:`chita_ext.solve` (``b = A w_bar`` by default).
    threads : int, optional
    check_finite : bool
        Check A for NaN/Inf once.

    Examples
    --------
    >>> path = RidgePath(A, w_bar, k)                 # doctest: +SKIP
    >>> best = min((path.solve(lam) for lam in (1e-3, 1e-2, 1e-1)),
    ...            key=lambda r: r.objective)         # doctest: +SKIP
    """

    def __init__(self, A, w_bar, k=None, *, support=None, b=None, alpha=None, threads=None,
                 check_finite: bool = True):
        info = _arrays.describe_matrix(A)
        nthreads = _arrays.check_threads(threads)
        w_bar_v = _arrays.as_vector(w_bar, info.p, "w_bar", info)
        if support is None:
            if k is None:
                raise ValueError("pass k (the support is then the k largest |w_bar|) or support=")
            _check_scalar_args(k, info.p, 0.0, "bso", 0, 0.0, None)
            idx = kernels.topk_abs(w_bar_v, int(k), threads=threads)
        else:
            host = np.asarray(support.cpu() if _arrays.is_torch(support) else support)
            if host.ndim != 1 or host.size == 0 or not np.issubdtype(host.dtype, np.integer):
                raise ValueError("support must be a non-empty 1-D array of integer indices")
            if host.min() < 0 or host.max() >= info.p or np.any(np.diff(host) <= 0):
                raise ValueError(f"support must be strictly increasing indices in [0, p={info.p})")
            idx = _arrays.as_vector(host, host.size, "support", info, dtype="int64")
        b_v = None if b is None else _arrays.as_vector(b, info.n, "b", info)
        alpha_v = None if alpha is None else _arrays.as_vector(alpha, info.p, "alpha", info)
        if check_finite:
            _arrays.check_matrix_finite(info, nthreads)
        if b_v is None:
            b_v = default_b(info, w_bar_v, nthreads)
        self.p, self.n = info.p, info.n
        self.support = np.asarray(idx.cpu() if _arrays.is_torch(idx) else idx, dtype=np.int64)
        self.k = int(self.support.size)
        # The arrays stay referenced here: the core holds pointers into them.
        self._keep = (info, w_bar_v, b_v, alpha_v, idx)
        backend = _arrays.make_backend(info, nthreads)
        self._path = _core.RidgePath(
            backend, info.view, _arrays.pointer(b_v), _arrays.pointer(w_bar_v),
            0 if alpha_v is None else _arrays.pointer(alpha_v), _arrays.pointer(idx), self.k)
        self._backend = backend
        self.setup_seconds = float(self._path.setup_seconds)

    def solve(self, lam: float) -> SolveResult:
        """The exact ridge solution on the support for this lam (``method="bso"``)."""
        _check_scalar_args(1, self.p, lam, "bso", 0, 0.0, None)
        vals, f, seconds = self._path.solve(float(lam))
        w = np.zeros(self.p, dtype=np.float32)
        w[self.support] = vals
        return SolveResult(w=w, support=self.support.copy(), objective=float(f),
                           history=np.array([f]), iterations=0, seconds=float(seconds),
                           method="bso", converged=True, info={"lam": float(lam)})
