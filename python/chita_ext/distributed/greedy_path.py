"""The greedy (OMP-order) path of one block whose columns span several ranks.

This is cpp/src/solvers/support_model.cpp (the n-space ridge fit with rank-1 Cholesky
updates) and greedy_grow with rate 0 (one column per pass), for the block method when a
block crosses a shard boundary. Every rank holds the same n-space state (the n x n
factor, r0, z and a few scalars); per added column the owning rank broadcasts that
column (n + 2 doubles), and the choice of column is an all-reduce of one (|g|, index)
pair per rank. Blocks inside one rank never come here: they run the compiled greedy.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .linalg import cholesky_with_jitter
from .problem import ShardedProblem
from .step_size import f32


def chol_rank1(L: np.ndarray, x: np.ndarray, sign: float) -> bool:
    """L L^T + sign x x^T in place (L lower, Fortran order); False if it stops being PD."""
    n = L.shape[0]
    for c in range(n):
        lcc = L[c, c]
        r2 = lcc * lcc + sign * x[c] * x[c]
        if not (r2 > 0.0 and math.isfinite(r2)):
            return False
        r = math.sqrt(r2)
        cs, sn = r / lcc, x[c] / lcc
        L[c, c] = r
        col, xs = L[c + 1:, c], x[c + 1:]
        new = (col + (sign * sn) * xs) * (1.0 / cs)
        x[c + 1:] = cs * xs - sn * new
        L[c + 1:, c] = new
    return True


class GreedyPath:
    """SupportModel of the block ``[begin, end)`` (global columns) on every rank."""

    def __init__(self, pb: ShardedProblem, begin: int, end: int):
        self.pb, self.n = pb, pb.n
        lo = min(max(begin - pb.offset, 0), pb.p_local)
        hi = max(min(end - pb.offset, pb.p_local), lo)
        self.cols = torch.arange(lo, hi, device=pb.device)  # this rank's block columns
        wb = pb.w_bar[self.cols]
        packed = pb.comm.sum(torch.cat([pb.ax_sparse(self.cols, wb),
                                        pb.scalars(pb.dot(wb, wb))]))
        self.b64 = packed[:self.n].float().double()     # the block's b = A_blk w_bar_blk
        self.wbar_sq = float(packed[self.n])
        b = self.b64.cpu().numpy()
        self.lam_ = pb.lam if pb.lam > 0 else 1e-10 * (float(b @ b) / self.n + 1e-30)
        self.in_S = torch.zeros(self.cols.numel(), dtype=torch.bool, device=pb.device)
        self.S = []  # global indices, in the order they were added
        self._reset()

    # ---- the n-space state ----------------------------------------------------------------
    def _reset(self):
        self.L = np.asfortranarray(math.sqrt(self.lam_) * np.eye(self.n))
        self.r0 = self.b64.cpu().numpy().copy()
        self.z = np.zeros(self.n)
        self.alpha_sq = self.alpha_wbar = 0.0
        self.wbar_out_sq = self.wbar_sq
        self._evaluate()

    def _evaluate(self):
        rhs = torch.from_numpy(self.lam_ * self.r0 + self.z).reshape(-1, 1)
        self.e = torch.cholesky_solve(rhs, torch.from_numpy(self.L)).reshape(-1).numpy()
        er, ez = float(self.e @ self.r0), float(self.e @ self.z)
        f = 0.5 * er + ((ez - self.alpha_sq) / (2 * self.lam_) if self.pb.alpha is not None
                        else 0.0)
        self.f = f + self.alpha_wbar + 0.5 * self.pb.lam * max(self.wbar_out_sq, 0.0)

    def _refactor(self):
        """From scratch on S: one all-reduce of the Gram, A_S w_bar_S, A_S alpha_S, sums."""
        pb, n = self.pb, self.n
        S = self.cols[self.in_S]
        wb = pb.w_bar[S]
        al = pb.alpha[S] if pb.alpha is not None else torch.zeros_like(wb)
        packed = pb.comm.sum(torch.cat([
            pb.gram_rows(S).to(pb.device).reshape(-1), pb.ax_sparse(S, wb), pb.ax_sparse(S, al),
            pb.scalars(pb.dot(al, al), pb.dot(al, wb), pb.dot(wb, wb))])).cpu()
        P = packed[:n * n].reshape(n, n) + self.lam_ * torch.eye(n, dtype=torch.float64)
        self.L = np.asfortranarray(cholesky_with_jitter(P).numpy())
        self.r0 = self.b64.cpu().numpy() - packed[n * n:n * n + n].numpy()
        self.z = packed[n * n + n:n * n + 2 * n].numpy().copy()
        self.alpha_sq, self.alpha_wbar, wbar_in = packed[n * n + 2 * n:].tolist()
        self.wbar_out_sq = self.wbar_sq - wbar_in

    # ---- greedy steps -----------------------------------------------------------------------
    def _gradient(self):
        """g = -A^T e - lam w_bar + alpha on this rank's block columns, 0 on S."""
        pb = self.pb
        e32 = torch.from_numpy(self.e).float().to(pb.device)
        g = -pb.atr_subset(e32, self.cols) + pb.w_bar[self.cols] * f32(-pb.lam)
        if pb.alpha is not None:
            g = g + pb.alpha[self.cols]
        return torch.where(self.in_S, torch.zeros_like(g), g)

    def _pick(self, g) -> int:
        """The global column with the largest |g| off S, ties to the smaller index."""
        pb, comm = self.pb, self.pb.comm
        score = torch.where(self.in_S, torch.full_like(g, -1.0), g.abs())
        pairs = torch.zeros(2 * comm.size, dtype=torch.float64)
        pairs[2 * comm.rank] = -1.0
        if score.numel():
            t = int(torch.argmax(score))  # the first maximum: the smallest index
            pairs[2 * comm.rank] = float(score[t])
            pairs[2 * comm.rank + 1] = float(pb.offset + int(self.cols[t]))
        pairs = comm.sum(pairs).reshape(-1, 2).tolist()
        best = max(range(comm.size), key=lambda r: (pairs[r][0], -pairs[r][1]))
        return int(pairs[best][1])

    def _add(self, j: int) -> None:
        pb, n = self.pb, self.n
        owner = next(r for r in range(pb.comm.size)
                     if pb.layout.offsets[r] <= j < pb.layout.offsets[r + 1])
        vec = torch.zeros(n + 2, dtype=torch.float64, device=pb.device)
        if owner == pb.comm.rank:
            jl = torch.tensor([j - pb.offset], device=pb.device)
            vec[:n] = pb.ax_sparse(jl, torch.ones(1, device=pb.device))
            vec[n] = float(pb.w_bar[jl])
            vec[n + 1] = float(pb.alpha[jl]) if pb.alpha is not None else 0.0
        vec = pb.comm.broadcast(vec, owner).cpu().numpy()
        a, wb, al = vec[:n], vec[n], vec[n + 1]
        self.S.append(j)
        if owner == pb.comm.rank:
            self.in_S[int(torch.searchsorted(self.cols, torch.tensor(j - pb.offset,
                                                                  device=pb.device)))] = True
        if 4 > 3 * n:  # batch_is_cheaper(1, n): rebuild instead of a rank-1 update
            self._refactor()
        else:
            self.r0 -= wb * a
            self.z += al * a
            self.alpha_sq += al * al
            self.alpha_wbar += al * wb
            self.wbar_out_sq -= wb * wb
            if not chol_rank1(self.L, a.copy(), 1.0):
                self._refactor()
        self._evaluate()

    def grow(self, k: int) -> list:
        """Adds columns one per pass up to k; returns the objective after 0, 1, ... adds."""
        values = [self.f]
        while len(self.S) < k:
            self._add(self._pick(self._gradient()))
            values.append(self.f)
        return values

    def local_support(self, count: int) -> torch.Tensor:
        """This rank's local indices among the first ``count`` columns of the path, sorted."""
        pb = self.pb
        mine = sorted(j - pb.offset for j in self.S[:count]
                      if pb.offset <= j < pb.offset + pb.p_local)
        return torch.tensor(mine, dtype=torch.int64, device=pb.device)
