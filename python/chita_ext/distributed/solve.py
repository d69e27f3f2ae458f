"""chita_ext.distributed.solve: the pruning problem with A's columns sharded over ranks."""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

from ..result import SolveResult
from .active import solve_active
from .basic import solve_bso, solve_mp
from .block import solve_block
from .comm import Comm
from .iht import solve_iht
from .problem import Inputs, ShardedProblem
from .select import DEFAULT_RADIX_BITS, MAX_RADIX_BITS

SOLVERS = {"mp": solve_mp, "bso": solve_bso, "iht": solve_iht, "active": solve_active,
           "block": solve_block}
METHODS = tuple(SOLVERS)


@dataclass(frozen=True)
class Options:
    max_iter: int = 100
    tol: float = 1e-6
    time_limit: float | None = None
    power_iters: int = 30
    max_doublings: int = 10
    blocks: tuple = ()
    block_size: int = 0


def _check_options(method, max_iter, tol, time_limit, power_iters, max_doublings, radix_bits):
    if method not in SOLVERS:
        raise ValueError(f"method={method!r} is not available distributed; choose one of "
                         f"{', '.join(METHODS)}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, Integral) or max_iter < 0:
        raise ValueError(f"max_iter={max_iter!r} must be an int >= 0")
    if not isinstance(tol, Real) or not math.isfinite(tol) or tol < 0:
        raise ValueError(f"tol={tol!r} must be a finite number >= 0")
    if time_limit is not None and (not isinstance(time_limit, Real) or not time_limit > 0):
        raise ValueError(f"time_limit={time_limit!r} must be a positive number of seconds or None")
    if not (isinstance(power_iters, Integral) and power_iters >= 1):
        raise ValueError(f"power_iters={power_iters!r} must be an int >= 1")
    if not (isinstance(max_doublings, Integral) and max_doublings >= 0):
        raise ValueError(f"max_doublings={max_doublings!r} must be an int >= 0")
    if not (isinstance(radix_bits, Integral) and 1 <= radix_bits <= MAX_RADIX_BITS):
        raise ValueError(f"radix_bits={radix_bits!r} must be an int in [1, {MAX_RADIX_BITS}]")


def solve(A_local, w_bar_local, k: int, *, lam: float, b=None, alpha=None, method: str = "iht",
          group=None, max_iter: int = 100, tol: float = 1e-6, threads: int | None = None,
          w0=None, time_limit: float | None = None, check_finite: bool = True,
          power_iters: int = 30, max_doublings: int = 10, blocks=None,
          block_size: int = 0, radix_bits: int = DEFAULT_RADIX_BITS) -> SolveResult:
    """:func:`chita_ext.solve` with the columns of A sharded over the ranks of a group.

    Collective: every rank of ``group`` calls it with its own contiguous block of columns
    (rank 0 the first block, rank 1 the next, ...; blocks may differ in size) and the same
    scalars and options. It returns the same support and objective (to rounding) as
    ``chita_ext.solve`` on the concatenated A with the same options. See
    docs/distributed.md for what each method communicates.

    Parameters
    ----------
    A_local : numpy.ndarray or torch.Tensor, shape (n, p_r)
        This rank's columns of A: anything :func:`chita_ext.solve` accepts (float32 or
        bfloat16, column- or row-major, CPU or CUDA tensor); never copied.
    w_bar_local, alpha, w0 : array_like, shape (p_r,)
        This rank's slices of w_bar, alpha (optional) and the warm start (optional).
    k : int
        Global number of weights to keep, ``1 <= k <= p`` (p = sum of the p_r).
    lam : float
        Ridge weight (>= 0).
    b : array_like, shape (n,), optional
        The full target, the same on every rank; default ``A w_bar`` (summed over ranks).
    method : str
        One of ``chita_ext.distributed.METHODS``: ``"mp"``, ``"bso"``, ``"iht"``,
        ``"active"``, ``"block"``.
    group : torch.distributed.ProcessGroup, optional
        Default: the world group (initialised with ``torch.distributed.init_process_group``).
    max_iter, tol, threads, time_limit, check_finite, power_iters, max_doublings
        As in :func:`chita_ext.solve`. ``time_limit`` is agreed by an all-reduce each
        iteration, so that every rank stops at the same one.
    blocks, block_size
        The block method's global layer boundaries and block size, as in ``solve``.
    radix_bits : int
        Bits of ``|x|`` the distributed top-k resolves per pass (1..16): each pass
        all-reduces ``2**radix_bits`` int64 counts; fewer bits, more (smaller) passes.

    Returns
    -------
    SolveResult
        ``w`` and ``support`` are this rank's slice: ``support`` holds *local* indices into
        ``w`` (``info["global_support"]`` the same entries as global indices). ``objective``,
        ``history``, ``iterations`` and ``converged`` are global and the same on every rank;
        ``info["support_size"]`` is the global support size, ``info["column_range"]`` this
        rank's global columns, ``info["comm"]`` the payload bytes and calls of the
        collectives this rank made (see :class:`chita_ext.distributed.CommStats`).

    Raises
    ------
    TypeError, ValueError
        On bad input on any rank, raised on every rank before any work (unknown method,
        wrong dtype or shape, NaN/Inf, k outside [1, p], ranks disagreeing on n or options).
    RuntimeError
        Without an initialised process group.
    """
    comm = Comm(group)
    pre_error, opt = None, Options()
    try:  # raised inside the collective set-up, so that no rank is left waiting
        _check_options(method, max_iter, tol, time_limit, power_iters, max_doublings,
                       radix_bits)
        opt = Options(int(max_iter), float(tol), time_limit, int(power_iters),
                      int(max_doublings), tuple(int(e) for e in (blocks or ())), block_size)
    except (TypeError, ValueError) as exc:
        pre_error = exc
    signature = (k, lam, method, opt, radix_bits)
    inp = Inputs(A_local, w_bar_local, k, lam, b, alpha, w0, threads, check_finite,
                 needs_col_major=method == "block", pre_error=pre_error,
                 radix_bits=radix_bits if pre_error is None else DEFAULT_RADIX_BITS)
    pb = ShardedProblem(comm, inp, signature)
    return SOLVERS[method](pb, opt)
