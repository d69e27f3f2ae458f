"""active (CHITA's active-set IHT) on a sharded problem, as cpp/src/solvers/active.cpp.

The active set is held as each rank's local (ascending) column indices; since ranks hold
increasing column blocks, the concatenation is the global active set in index order, so
a distributed top-k over the local active entries breaks ties by global index exactly as
the single-process solver does. Per inner iteration: a local ``atr_subset`` over the
active columns, then per step-doubling trial a distributed top-k and one all-reduce of
n + 3 doubles. Each outer round adds one backsolve and one full gradient pass.
"""
from __future__ import annotations

import time

import torch

from .backsolve import backsolve
from .lipschitz import lipschitz_constant
from .problem import ShardedProblem
from .result import make_result
from .select import select_topk
from .step_size import f32, relative_decrease

MAX_OUTER = 50


def _union(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.unique(torch.cat([a, b]), sorted=True)


class ShardedActiveSet:
    def __init__(self, pb: ShardedProblem, opt):
        self.pb, self.opt = pb, opt
        self.every = torch.arange(pb.p_local, device=pb.device)

    def _threshold(self, cols, v, k=None):
        """The k largest |v| over cols (ties: smaller column): (indices, values)."""
        pos = select_topk(self.pb.comm, v, self.pb.k if k is None else k, self.pb.radix_bits)
        return cols[pos], v[pos]

    def _on(self, cols):
        """The current iterate on cols (cur ⊂ cols), zeros elsewhere."""
        w = torch.zeros(cols.numel(), dtype=torch.float32, device=self.pb.device)
        w[torch.searchsorted(cols, self.S)] = self.val
        return w

    def _grad(self, cols, w):
        """-A_cols^T r + lam (w - w_bar_cols) + alpha_cols, in the C++ float order."""
        pb = self.pb
        g = pb.atr_subset(self.r.float(), cols) if cols.numel() < pb.p_local \
            else pb.atr(self.r.float())
        g = -g + (w - pb.w_bar[cols]) * f32(pb.lam)
        return g + (pb.alpha[cols] if pb.alpha is not None else 0.0)

    def _step(self, cols, tau):
        w = self._on(cols)
        return w - self._grad(cols, w) * f32(tau)

    def run(self):
        pb, opt = self.pb, self.opt
        start = time.perf_counter()
        tau = 1.0 / lipschitz_constant(pb, opt.power_iters)
        every = self.every
        self.S, self.val = self._threshold(every, pb.w0 if pb.w0 is not None else pb.w_bar)
        fc, self.r = pb.evaluate(self.S, self.val)
        history, self.iterations, converged = [fc], 0, False
        # Active set: the support of H_{1.5k}(w - tau g), with the start kept in it.
        v = self._step(every, tau)
        a0 = min(pb.p, pb.k + (pb.k + 1) // 2)
        act = _union(self._threshold(every, v, a0)[0], self.S)
        for _ in range(MAX_OUTER):
            fc = self._inner_iht(act, tau, fc, history, start)
            val_bso = backsolve(pb, self.S)  # exact on the support
            fb, r_b = pb.evaluate(self.S, val_bso)
            if fb < fc:
                self.val, fc, self.r = val_bso, fb, r_b
            # Entering coordinates: the support of H_k(w - tau g) over all p, outside act.
            t_idx, _ = self._threshold(every, self._step(every, tau))
            grow = t_idx[~torch.isin(t_idx, act)]
            if pb.comm.sum_scalars(float(grow.numel()))[0] == 0:
                converged = True
                break
            act = _union(act, grow)
            if pb.out_of_time(start, opt.time_limit):
                break
        f, _ = pb.evaluate(self.S, self.val)
        history.append(f)
        return make_result(pb, self.S, self.val, f, history, self.iterations, "active",
                           converged, start)

    def _inner_iht(self, act, tau, fc, history, start):
        """IHT on the active columns with step doubling (CHITA's trials) from 1/L."""
        pb, opt = self.pb, self.opt
        for _ in range(opt.max_iter):
            if pb.out_of_time(start, opt.time_limit):
                break
            best, fbest, t = None, fc, tau
            w0 = self._on(act)
            g = self._grad(act, w0)
            for _ in range(opt.max_doublings + 1):
                v = w0 - g * f32(t)
                idx, val = self._threshold(act, v)
                fx, rx = pb.evaluate(idx, val)
                if not fx < fbest:
                    break
                fbest, best = fx, (idx, val, rx)
                t *= 2
            if best is None:  # decided on all-reduced f: the same on every rank
                break
            self.S, self.val, self.r = best
            f_old, fc = fc, fbest
            self.iterations += 1
            history.append(fc)
            if relative_decrease(f_old, fc) < opt.tol:
                break
        return fc


def solve_active(pb: ShardedProblem, opt):
    return ShardedActiveSet(pb, opt).run()
