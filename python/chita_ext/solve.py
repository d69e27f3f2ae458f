"""chita_ext.solve: the L0-constrained empirical-Fisher problem, one call."""
from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np

from . import _arrays, _core
from .result import SolveResult

METHODS = tuple(_core.methods())


def _check_scalar_args(k, p, lam, method, max_iter, tol, time_limit):
    if isinstance(k, bool) or not isinstance(k, Integral):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if not 1 <= k <= p:
        raise ValueError(f"k={k} must be in [1, p={p}]")
    if isinstance(lam, bool) or not isinstance(lam, Real):
        raise TypeError(f"lam must be a number, got {type(lam).__name__}")
    if not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam={lam} must be a finite number >= 0")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, Integral) or max_iter < 0:
        raise ValueError(f"max_iter={max_iter!r} must be an int >= 0")
    if not isinstance(tol, Real) or not math.isfinite(tol) or tol < 0:
        raise ValueError(f"tol={tol!r} must be a finite number >= 0")
    if time_limit is not None and (not isinstance(time_limit, Real) or not time_limit > 0):
        raise ValueError(f"time_limit={time_limit!r} must be a positive number of seconds or None")


def default_b(info: _arrays.MatrixInfo, w_bar, threads: int):
    """b = A w_bar (float32, on A's device), computed by the core in one pass."""
    backend = _arrays.make_backend(info, threads)
    out = _arrays.empty_like_device(info, (info.n,), "float64")
    _core.kernels.ax_dense(backend, info.view, _arrays.pointer(w_bar), _arrays.pointer(out))
    return out.astype(np.float32) if isinstance(out, np.ndarray) else out.float()


def _quality_options(greedy_rate, swap_rounds, swap_size, blocks, block_size, p):
    """Checks and packs the options of the quality methods (docs/solvers.md)."""
    if greedy_rate is not None and not (isinstance(greedy_rate, Real) and greedy_rate >= 0):
        raise ValueError(f"greedy_rate={greedy_rate!r} must be a number >= 0 or None (auto)")
    if not (isinstance(swap_rounds, Integral) and swap_rounds >= 0):
        raise ValueError(f"swap_rounds={swap_rounds!r} must be an integer >= 0")
    if not (isinstance(swap_size, Integral) and swap_size >= 0):
        raise ValueError(f"swap_size={swap_size!r} must be an integer >= 0 (0: auto)")
    if not (isinstance(block_size, Integral) and block_size >= 0):
        raise ValueError(f"block_size={block_size!r} must be an integer >= 0 (0: whole layers)")
    edges = [] if blocks is None else [int(e) for e in blocks]
    edges = [e for e in edges if e != 0]
    if any(b <= a for a, b in zip([0] + edges, edges)) or (edges and edges[-1] > p):
        raise ValueError(f"blocks={blocks!r} must be increasing layer boundaries in (0, p={p}]")
    return {"greedy_rate": -1.0 if greedy_rate is None else float(greedy_rate),
            "swap_rounds": int(swap_rounds), "swap_size": int(swap_size),
            "blocks": edges, "block_size": int(block_size)}


def solve(
    A,
    w_bar,
    k: int,
    *,
    lam: float,
    b=None,
    alpha=None,
    method: str = "auto",
    max_iter: int = 100,
    tol: float = 1e-6,
    threads: int | None = None,
    w0=None,
    time_limit: float | None = None,
    check_finite: bool = True,
    power_iters: int = 30,
    max_doublings: int = 10,
    greedy_rate: float | None = None,
    swap_rounds: int = 30,
    swap_size: int = 0,
    blocks=None,
    block_size: int = 0,
) -> SolveResult:
    """Prune: minimise the local quadratic model of the loss with at most k non-zeros.

    Solves ``min_w 1/2 ||b - A w||^2 + lam/2 ||w - w_bar||^2 + alpha^T w`` subject to
    ``||w||_0 <= k``, where the rows of A are (scaled) per-sample gradients, so that
    ``A^T A`` is the empirical Fisher. Everything runs in the compiled core with the GIL
    released.

    Parameters
    ----------
    A : numpy.ndarray or torch.Tensor, shape (n, p)
        float32 or bfloat16 (``ml_dtypes.bfloat16`` for numpy). Column-major storage
        (``numpy.asfortranarray``, or a torch tensor that is the ``.T`` of a contiguous
        (p, n) tensor) is the fast path; C-ordered arrays use a slower row-major kernel
        path. Never copied; ``numpy.memmap`` works. A CUDA tensor runs on the GPU (if the
        package was built with CUDA).
    w_bar : array_like, shape (p,)
        The trained weights the model is expanded around.
    k : int
        Number of weights to keep, ``1 <= k <= p``.
    lam : float
        Ridge weight (>= 0) keeping the quadratic model local. A useful scale is
        ``rel * ||A||_F^2 / p`` with ``rel`` around 1e-3 to 1.
    b : array_like, shape (n,), optional
        Target; defaults to ``A @ w_bar`` (the gradient term dropped).
    alpha : array_like, shape (p,), optional
        Linear term, e.g. the mean gradient when the first-order term is kept.
    method : str
        One of ``chita_ext.METHODS`` (docs/solvers.md): ``"auto"`` (the default: greedy
        selection in OMP order, then swap local search from the greedy, the IHT and the
        magnitude supports, best kept; bounded passes over A), ``"mp"`` (magnitude), ``"bso"``
        (exact ridge backsolve on the magnitude support or on ``w0``'s), ``"iht"``
        (iterative hard thresholding with CHITA's step sizes, finished by a backsolve),
        ``"active"`` (CHITA's active-set IHT), ``"greedy"``, ``"swap"`` (local search
        from ``w0``'s or the magnitude support), ``"block"`` (block-diagonal, per-layer
        blocks sharing one budget).
    max_iter : int
        Iteration cap for iterative methods; for ``"auto"``, the cap on passes over A
        in each of its phases (greedy passes, swap rounds, IHT iterations).
    tol : float
        Stop when the relative decrease of the objective falls below ``tol``.
    threads : int, optional
        CPU threads for the kernels. Default: ``CHITA_NUM_THREADS``, else
        ``OMP_NUM_THREADS``, else the CPUs this process may use (affinity mask and cgroup
        quota). Capped at those CPUs; small problems use fewer (one per ~256 KB of work).
    w0 : array_like, shape (p,), optional
        Warm start: its top-k support (and values) start the method.
    time_limit : float, optional
        Wall-clock budget in seconds for iterative methods (``"auto"`` stops starting
        new work at fixed shares of it and returns its best support so far).
    check_finite : bool
        Check A for NaN/Inf (one pass over A). Vectors are always checked.
    power_iters, max_doublings : int
        Power iterations for ``L = ||A||_2^2 + lam`` (only if the 1/L fallback is needed),
        and the cap on step doublings when the support changes.
    greedy_rate, swap_rounds, swap_size, blocks, block_size
        Options of the greedy, swap, block and auto methods (docs/solvers.md).

    Returns
    -------
    SolveResult
        ``w`` (float32, at most k non-zeros), ``support``, ``objective`` (float64),
        ``history``, ``iterations``, ``seconds``, ``method``, ``converged``, ``info``.

    Raises
    ------
    TypeError, ValueError
        On bad input, before any work: wrong dtype/shape, NaN/Inf, k out of range,
        negative lam, unknown method, arrays on different devices.
    """
    info = _arrays.describe_matrix(A)
    _check_scalar_args(k, info.p, lam, method, max_iter, tol, time_limit)
    nthreads = _arrays.check_threads(threads)
    w_bar_v = _arrays.as_vector(w_bar, info.p, "w_bar", info)
    b_v = None if b is None else _arrays.as_vector(b, info.n, "b", info)
    alpha_v = None if alpha is None else _arrays.as_vector(alpha, info.p, "alpha", info)
    w0_v = None if w0 is None else _arrays.as_vector(w0, info.p, "w0", info)
    if check_finite:
        _arrays.check_matrix_finite(info, nthreads)
    if b_v is None:
        b_v = default_b(info, w_bar_v, nthreads)
    backend = _arrays.make_backend(info, nthreads)
    out = _core.solve(
        backend, info.view, _arrays.pointer(b_v), _arrays.pointer(w_bar_v),
        0 if alpha_v is None else _arrays.pointer(alpha_v),
        0 if w0_v is None else _arrays.pointer(w0_v),
        int(k), float(lam), method, int(max_iter), float(tol), int(power_iters),
        int(max_doublings), float(time_limit or 0.0),
        _quality_options(greedy_rate, swap_rounds, swap_size, blocks, block_size, info.p),
    )
    return SolveResult(
        w=out["w"], support=out["support"], objective=float(out["objective"]),
        history=out["history"], iterations=int(out["iterations"]),
        seconds=float(out["seconds"]), method=out["method"],
        converged=bool(out["converged"]), info=dict(out["info"]),
    )

