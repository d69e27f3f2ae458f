"""ShardedRidgePath: :class:`chita_ext.RidgePath` with A's columns sharded over the ranks.

The lam search of a distributed :func:`chita_ext.prune` solves one support for several
lam. Everything that does not depend on lam is all-reduced once when the path is built
(the support S is the global top-k of ``|w_bar|``, a distributed radix select):

* k > n (Woodbury): the n x n Gram ``K = A_S A_S^T`` (each rank's ``gram_rows`` on its
  part of S), ``r0 = b - A_S w_bar_S`` and ``A_S alpha_S``: one all-reduce of ``n^2 + 2n``
  doubles. Per lam every rank factors the same ``K + lam I`` and keeps its slice of
  ``A_S^T y``, with no communication.
* k <= n: the k support columns themselves (at most n^2 values) and ``A_S w_bar_S``; per
  lam every rank solves the same k x k system.

Each :meth:`ShardedRidgePath.solve` then costs one n x n (or k x k) Cholesky on every rank
and the objective (one all-reduce of n + 3 doubles), the arithmetic of
``cpp/src/solvers/ridge_on_support.cpp`` and of :mod:`.backsolve`.
"""
from __future__ import annotations

import math
import time

import torch

from .. import kernels
from .backsolve import support_columns
from .comm import Comm
from .linalg import cholesky_solve, cholesky_with_jitter
from .problem import Inputs, ShardedProblem, as_tensor
from .result import make_result
from .select import select_topk


class ShardedRidgePath:
    """Exact ridge solutions on the global top-k support of ``|w_bar|``, many lam.

    Collective: every rank builds it with its own column block, as for
    :func:`chita_ext.distributed.solve`, and calls :meth:`solve` with the same lam.

    Parameters
    ----------
    A_local : numpy.ndarray or torch.Tensor, shape (n, p_r)
        This rank's columns of A (float32 or bfloat16; never copied).
    w_bar_local, alpha_local : array_like, shape (p_r,)
        This rank's slices of w_bar and (optional) alpha.
    k : int
        Global support size.
    group : torch.distributed.ProcessGroup, optional
    threads : int, optional
    comm : Comm, optional
        Use this Comm (and its byte counts) instead of a fresh one on ``group``.
    """

    def __init__(self, A_local, w_bar_local, k: int, *, alpha_local=None, group=None,
                 threads=None, check_finite: bool = True, comm: Comm | None = None):
        start = time.perf_counter()
        comm = comm if comm is not None else Comm(group)
        inp = Inputs(A_local, w_bar_local, k, 0.0, None, alpha_local, None, threads,
                     check_finite)
        pb = ShardedProblem(comm, inp, ("ridge_path", k))
        self.pb, self.comm, self.n, self.k = pb, comm, pb.n, pb.k
        self.S = select_topk(comm, pb.w_bar, pb.k, pb.radix_bits)
        counts = comm.gather_ints(self.S.numel())
        self.first = sum(counts[:comm.rank])
        self.woodbury = self.k > self.n
        self.wbar_s = pb.w_bar[self.S]
        self.alpha_s = pb.alpha[self.S].double() if pb.alpha is not None else None
        if self.woodbury:
            self._setup_woodbury()
        else:
            self._setup_small()
        self.setup_seconds = time.perf_counter() - start

    def _setup_woodbury(self):
        pb, S = self.pb, self.S
        parts = [pb.ax_sparse(S, self.wbar_s), pb.gram_rows(S).to(pb.device).reshape(-1)]
        if self.alpha_s is not None:
            parts.append(pb.ax_sparse(S, pb.alpha[S]))
        packed = self.comm.sum(torch.cat(parts))
        n = self.n
        self.r0 = (pb.b64 - packed[:n]).cpu()
        self.K = packed[n:n + n * n].reshape(n, n).cpu()
        self.z = packed[n + n * n:].cpu() if self.alpha_s is not None else None

    def _setup_small(self):
        pb, S, n, k = self.pb, self.S, self.n, self.k
        dev = pb.device
        cols = torch.zeros((k, n), dtype=torch.float64, device=dev)
        alpha_all = torch.zeros(k, dtype=torch.float64, device=dev)
        if S.numel():
            cols[self.first:self.first + S.numel()] = support_columns(pb, S).to(dev).double()
            if self.alpha_s is not None:
                alpha_all[self.first:self.first + S.numel()] = self.alpha_s
        packed = self.comm.sum(torch.cat([pb.ax_sparse(S, self.wbar_s), cols.reshape(-1),
                                          alpha_all]))
        r0 = pb.b64 - packed[:n]
        A_S = packed[n:n + k * n].reshape(k, n).float().T  # n x k, column-major
        every = torch.arange(k, dtype=torch.int64, device=dev)
        self.G = torch.from_numpy(kernels.gram_cols(A_S, every, threads=pb.threads))
        c = as_tensor(kernels.atr(A_S, r0.float(), threads=pb.threads)).double().cpu()
        self.c = c - packed[n + k * n:].cpu() if self.alpha_s is not None else c

    def _values(self, lam: float) -> torch.Tensor:
        """This rank's values on its part of S (float32) for this lam."""
        pb, S = self.pb, self.S
        if not self.woodbury:
            G = self.G + lam * torch.eye(self.k, dtype=torch.float64)
            d = cholesky_solve(cholesky_with_jitter(G), self.c)
            d = d[self.first:self.first + S.numel()].to(pb.device)
        else:
            if self.alpha_s is not None and lam <= 0:
                raise ValueError(f"lam=0 with a linear term alpha needs k <= n (k={self.k}, "
                                 f"n={self.n}); pass lam > 0")
            K = self.K + lam * torch.eye(self.n, dtype=torch.float64)
            rhs = self.r0 if self.z is None else self.r0 + self.z / lam
            y = cholesky_solve(cholesky_with_jitter(K), rhs).float().to(pb.device)
            d = pb.atr_subset(y, S).double()
            if self.alpha_s is not None:
                d = d - self.alpha_s / lam
        return (self.wbar_s.double() + d).float()

    def solve(self, lam: float):
        """This rank's slice of the exact ridge solution on S (a ``SolveResult`` as
        :func:`chita_ext.distributed.solve` returns, ``method="bso"``). Collective."""
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) \
                or not math.isfinite(lam) or lam < 0:
            raise ValueError(f"lam={lam!r} must be a finite number >= 0")
        start = time.perf_counter()
        self.pb.lam = float(lam)  # the objective reads pb.lam
        vals = self._values(float(lam))
        f, _ = self.pb.evaluate(self.S, vals)
        return make_result(self.pb, self.S, vals, f, [f], 0, "bso", True, start,
                           {"lam": float(lam)})
