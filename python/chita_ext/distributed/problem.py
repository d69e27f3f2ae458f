"""One rank's view of a column-sharded problem: its inputs checked once, its kernels, and
the objective as global sums (cpp/src/solvers/common.cpp, ObjectiveEvaluator).

Every rank holds ``A_r`` (n x p_r), its slices of ``w_bar``/``alpha``/``w0`` and the full
``b`` (length n). Products with A are local kernel calls (``chita_ext.kernels``); an
n-vector such as ``A w`` is the all-reduced sum of the ranks' partial products. Local
vectors are torch tensors on A's device.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import torch

from .. import _arrays, kernels
from .comm import Comm
from .layout import ShardLayout


def as_tensor(x):
    """A kernel output or checked vector (numpy on the CPU, torch on CUDA) as a torch
    tensor, without a copy unless numpy marks it read-only."""
    if isinstance(x, torch.Tensor):
        return x
    x = np.asarray(x)
    return torch.from_numpy(x if x.flags.writeable else x.copy())


@dataclass
class Inputs:
    """What the caller passed on this rank (checked by :func:`check_local`)."""

    A: object
    w_bar: object
    k: int
    lam: float
    b: object = None
    alpha: object = None
    w0: object = None
    threads: int | None = None
    check_finite: bool = True
    needs_col_major: bool = False
    radix_bits: int = 8                  # bits per pass of the distributed top-k
    pre_error: Exception | None = None  # a failed argument check, raised with the others


def _check_local(inp: Inputs):
    """Local checks; returns (info, w_bar, b, alpha, w0, threads) or raises."""
    if inp.pre_error is not None:
        raise inp.pre_error
    info = _arrays.describe_matrix(inp.A, name="A_local")
    threads = _arrays.check_threads(inp.threads)
    if isinstance(inp.k, bool) or not isinstance(inp.k, Integral):
        raise TypeError(f"k must be an int, got {type(inp.k).__name__}")
    if isinstance(inp.lam, bool) or not isinstance(inp.lam, Real):
        raise TypeError(f"lam must be a number, got {type(inp.lam).__name__}")
    if not math.isfinite(inp.lam) or inp.lam < 0:
        raise ValueError(f"lam={inp.lam} must be a finite number >= 0")
    if inp.needs_col_major and info.layout != "col":
        raise ValueError("method='block' needs A_local stored column-major (one weight's "
                         "gradients contiguous); pass numpy.asfortranarray(A_local) or "
                         "A_local.T.contiguous().T")
    w_bar = _arrays.as_vector(inp.w_bar, info.p, "w_bar_local", info)
    b = None if inp.b is None else _arrays.as_vector(inp.b, info.n, "b", info)
    alpha = None if inp.alpha is None else _arrays.as_vector(inp.alpha, info.p, "alpha_local", info)
    w0 = None if inp.w0 is None else _arrays.as_vector(inp.w0, info.p, "w0_local", info)
    if inp.check_finite:
        _arrays.check_matrix_finite(info, threads, name="A_local")
    return info, w_bar, b, alpha, w0, threads


def _raise_agreed(errors, own):
    """Raise on every rank when any rank's inputs failed its checks."""
    bad = [(r, e) for r, e in enumerate(errors) if e is not None]
    if not bad:
        return
    if own is not None:
        raise own
    r, (kind, msg) = bad[0]
    exc = TypeError if kind == "TypeError" else ValueError
    raise exc(f"rank {r} rejected its inputs: {msg}")


class ShardedProblem:
    """The checked problem on this rank, with local kernels and global reductions.

    Collective: every rank of ``comm`` constructs it with its own shard. Bad input on any
    rank raises on every rank (no rank is left waiting in a collective).
    """

    def __init__(self, comm: Comm, inp: Inputs, signature: tuple):
        self.comm = comm
        own, checked = None, None
        try:
            checked = _check_local(inp)
        except (TypeError, ValueError) as exc:
            own = exc
        mine = None if own is None else (type(own).__name__, str(own))
        sizes = (checked[0].n, checked[0].p) if checked else (0, 0)
        gathered = comm.gather_objects((mine, sizes, signature, inp.b is None,
                                        inp.alpha is None, inp.w0 is None))
        _raise_agreed([g[0] for g in gathered], own)
        for what, pos in (("n (rows of A_local)", None), ("the options", 2),
                          ("whether b is given", 3), ("whether alpha is given", 4),
                          ("whether w0 is given", 5)):
            vals = [g[1][0] if pos is None else g[pos] for g in gathered]
            if any(v != vals[0] for v in vals):
                raise ValueError(f"ranks disagree on {what}: {vals}; every rank must pass "
                                 "the same n, k, lam, method and options")
        info, w_bar, b, alpha, w0, threads = checked
        self.layout = ShardLayout.from_sizes([g[1][1] for g in gathered], comm.rank)
        # kernels take None (OpenMP default) or a positive count, as the user passed it
        self.info, self.A, self.threads = info, info.array, (threads or None)
        self.n, self.p_local, self.p = info.n, info.p, self.layout.p
        self.offset = self.layout.begin
        if not 1 <= inp.k <= self.p:
            raise ValueError(f"k={inp.k} must be in [1, p={self.p}] (p summed over ranks)")
        self.k, self.lam = int(inp.k), float(inp.lam)
        self.radix_bits = inp.radix_bits
        self.device = w_bar.device if isinstance(w_bar, torch.Tensor) else torch.device("cpu")
        self.w_bar = as_tensor(w_bar)
        self.alpha = None if alpha is None else as_tensor(alpha)
        self.w0 = None if w0 is None else as_tensor(w0)
        # b = A w_bar (the default) is the sum of the ranks' partial products; ||w_bar||^2
        # rides along in the same all-reduce.
        wbar_sq = self.dot(self.w_bar, self.w_bar)
        if b is None:
            packed = comm.sum(torch.cat([self.ax_dense(self.w_bar),
                                         torch.tensor([wbar_sq], dtype=torch.float64,
                                                      device=self.device)]))
            self.b = packed[:self.n].float()
            self.wbar_sq = float(packed[self.n])
        else:
            self.b = as_tensor(b)
            self.wbar_sq = comm.sum_scalars(wbar_sq)[0]
        self.b64 = self.b.double()

    # ---- local kernels (empty index sets allowed) --------------------------------------
    def atr(self, r32):
        return as_tensor(kernels.atr(self.A, r32, threads=self.threads))

    def atr_subset(self, r32, idx):
        if idx.numel() == 0:
            return torch.zeros(0, dtype=torch.float32, device=self.device)
        return as_tensor(kernels.atr_subset(self.A, r32, idx, threads=self.threads))

    def ax_sparse(self, idx, x):
        if idx.numel() == 0:
            return torch.zeros(self.n, dtype=torch.float64, device=self.device)
        return as_tensor(kernels.ax_sparse(self.A, idx, x, threads=self.threads))

    def ax_dense(self, x):
        return as_tensor(kernels.ax_dense(self.A, x, threads=self.threads))

    def gram_rows(self, idx):
        if idx.numel() == 0:
            return torch.zeros((self.n, self.n), dtype=torch.float64)
        return torch.from_numpy(kernels.gram_rows(self.A, idx, threads=self.threads))

    @staticmethod
    def dot(x, y) -> float:
        """sum x*y of float32 vectors, accumulated in float64."""
        return float((x.double() * y.double()).sum()) if x.numel() else 0.0

    def scalars(self, *values):
        """A float64 tensor on the problem's device (for packing into an all-reduce)."""
        return torch.tensor(values, dtype=torch.float64, device=self.device)

    # ---- objective (ObjectiveEvaluator) ------------------------------------------------
    def local_terms(self, S, x):
        """This rank's ||w_bar_S||^2, ||x - w_bar_S||^2 and alpha_S^T x (3 doubles), to be
        all-reduced and passed to :meth:`combine_terms`."""
        wb = self.w_bar[S]
        al = self.dot(self.alpha[S], x) if self.alpha is not None else 0.0
        return self.scalars(self.dot(wb, wb), float(((x.double() - wb.double()) ** 2).sum())
                            if x.numel() else 0.0, al)

    def combine_terms(self, r, terms) -> float:
        """f(w) from the global residual r and the all-reduced :meth:`local_terms`."""
        f = 0.5 * float(torch.dot(r, r))
        if self.lam > 0:
            f += 0.5 * self.lam * ((self.wbar_sq - float(terms[0])) + float(terms[1]))
        if self.alpha is not None:
            f += float(terms[2])
        return f

    def evaluate(self, S, x):
        """(f, r) for w = (S, x) on this rank: r = b - A_S x (global, float64) and f(w), in
        one all-reduce of n + 3 doubles."""
        packed = self.comm.sum(torch.cat([self.ax_sparse(S, x), self.local_terms(S, x)]))
        r = self.b64 - packed[:self.n]
        return self.combine_terms(r, packed[self.n:]), r

    def from_residual(self, S, x, r) -> float:
        """f(w) for w = (S, x) given r = b - A_S x: one all-reduce of 3 doubles."""
        return self.combine_terms(r, self.comm.sum(self.local_terms(S, x)))

    def out_of_time(self, start: float, time_limit) -> bool:
        """Whether any rank has passed ``time_limit`` (agreed by an all-reduce, so that
        every rank stops at the same iteration)."""
        if not time_limit:
            return False
        late = 1.0 if time.perf_counter() - start > time_limit else 0.0
        return self.comm.max_scalar(late) > 0
