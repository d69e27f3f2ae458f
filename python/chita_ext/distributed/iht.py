"""iht on a sharded problem, step for step as cpp/src/solvers/iht.cpp.

Per iteration, on every rank: the local gradient ``g_r = -A_r^T r + lam (w_r - w_bar_r) +
alpha_r`` (one pass over the local columns), then one all-reduce of ``A_S g_S`` and
``||g_S||^2`` (n + 1 doubles), one of ``M = max |g_j|`` off the support and one of the
local ``tau_chg`` (one double each). A support-keeping step adds one all-reduce of 3
doubles; each support-changing trial adds a distributed top-k (a few histograms) and one
all-reduce of ``2n + 3`` doubles. Nothing of length p is communicated.
"""
from __future__ import annotations

import time

import torch

from .backsolve import backsolve
from .basic import top_k_of
from .lipschitz import lipschitz_constant
from .problem import ShardedProblem
from .result import make_result
from .step_size import INF, decrease_at_optimal, f32, relative_decrease, tau_optimal

BEYOND_CHANGE = 1e-3       # try tau_chg (1 + eps) so that the support does change
EXACT_RESIDUAL_EVERY = 8   # recompute r from scratch this often (bounds rounding drift)
STALL_WINDOW = 20          # iht.cpp kStallWindow
STALL_DECREASE = 1e-3      # iht.cpp kStallDecrease


class ShardedIht:
    """The C++ Iht class with local vectors and global sums."""

    def __init__(self, pb: ShardedProblem, opt):
        self.pb, self.opt = pb, opt
        p = pb.p_local
        self.w = torch.zeros(p, dtype=torch.float32, device=pb.device)
        self.mask = torch.zeros(p, dtype=torch.bool, device=pb.device)
        self.L = 0.0
        self.steps = {"steps_opt": 0, "steps_chg": 0, "steps_lip": 0}

    def run(self):
        pb, opt = self.pb, self.opt
        start = time.perf_counter()
        self.S, self.val = top_k_of(pb, pb.w0 if pb.w0 is not None else pb.w_bar)
        self.f, self.r = pb.evaluate(self.S, self.val)
        self._sync_dense()
        history, iterations, converged = [self.f], 0, False
        stop_reason, stable, f_window = "max_iter", 0, self.f
        loop_start, loop_comm = time.perf_counter(), pb.comm.stats.snapshot()
        for _ in range(opt.max_iter):
            if pb.out_of_time(start, opt.time_limit):
                stop_reason = "time_limit"
                break
            f_old = self.f
            changes_before = self.steps["steps_chg"] + self.steps["steps_lip"]
            if not self._step():  # no step decreases f: a fixed point of the IHT map
                converged, stop_reason = True, "fixed_point"
                break
            # The C++ stall stop (iht.cpp): support unchanged for STALL_WINDOW iterations
            # and f fell by less than STALL_DECREASE over them.
            if self.steps["steps_chg"] + self.steps["steps_lip"] != changes_before:
                stable, f_window = 0, self.f
            else:
                stable += 1
                if stable >= STALL_WINDOW:
                    if relative_decrease(f_window, self.f) < STALL_DECREASE:
                        iterations += 1
                        history.append(self.f)
                        converged, stop_reason = True, "support_stable"
                        break
                    stable, f_window = 0, self.f
            iterations += 1
            if iterations % EXACT_RESIDUAL_EVERY == 0:
                self.f, self.r = pb.evaluate(self.S, self.val)
            history.append(self.f)
            if relative_decrease(f_old, self.f) < opt.tol:
                converged, stop_reason = True, "tol"
                break
        iteration_seconds = time.perf_counter() - loop_start
        iteration_comm = pb.comm.stats.since(loop_comm).as_dict()
        # Backsolve on the final support: optimal for that support, so never worse.
        val_bso = backsolve(pb, self.S)
        f_bso, _ = pb.evaluate(self.S, val_bso)
        if f_bso <= self.f:
            self.val, self.f = val_bso, f_bso
        info = dict(self.steps, iteration_seconds=iteration_seconds, stop_reason=stop_reason,
                    iteration_comm=iteration_comm)
        return make_result(pb, self.S, self.val, self.f, history, iterations, "iht",
                           converged, start, info)

    # ---- pieces of an iteration ----------------------------------------------------------
    def _gradient_on_support(self):
        """g (local, float32) in the C++ order of float operations; g_S; A g_S (global)."""
        pb = self.pb
        lam = f32(pb.lam)
        g = -pb.atr(self.r.float()) + self.w * lam
        if pb.lam > 0:
            g = g + pb.w_bar * f32(-lam)
        if pb.alpha is not None:
            g = g + pb.alpha
        self.g = g
        self.g_s = g[self.S]
        packed = pb.comm.sum(torch.cat([pb.ax_sparse(self.S, self.g_s),
                                        pb.scalars(pb.dot(self.g_s, self.g_s))]))
        self.a_g_s = packed[:pb.n]
        return float(packed[pb.n])

    def _support_change_step(self, M: float) -> float:
        """Global min over the support of |w_t| / (M + sign(w_t) g_t) (positive terms)."""
        w, g = self.val.double(), self.g_s.double()
        denom = M + torch.where(w > 0, g, -g)
        ok = (w != 0) & (denom > 0)
        local = float((w.abs()[ok] / denom[ok]).min()) if bool(ok.any()) else INF
        return self.pb.comm.min_scalar(local)

    def _evaluate_trial(self, tau: float) -> float:
        """f at H_k(w - tau g); the candidate lands in self.trial. With T the new support:
        A v_T = A w_S - tau A g_S + A delta, delta = v on T \\ S and -v on S \\ T."""
        pb = self.pb
        v = self.w + self.g * f32(-tau)
        T, t_val = top_k_of(pb, v)
        in_t = torch.zeros_like(self.mask)
        in_t[T] = True
        delta_new = torch.where(self.mask[T], torch.zeros_like(t_val), t_val)
        v_s = v[self.S]
        delta_old = torch.where(in_t[self.S], torch.zeros_like(v_s), -v_s)
        packed = pb.comm.sum(torch.cat([pb.ax_sparse(T, delta_new),
                                        pb.ax_sparse(self.S, delta_old),
                                        pb.local_terms(T, t_val)]))
        n = pb.n
        r = self.r + tau * self.a_g_s
        r = r - packed[:n]
        r = r - packed[n:2 * n]
        f = pb.combine_terms(r, packed[2 * n:])
        self.trial = (T, t_val, r)
        return f

    def _support_changing_trials(self, tau_chg: float) -> float:
        """tau_chg (1 + eps), then doubling while f keeps decreasing; best f (or inf)."""
        best = INF
        if not tau_chg < INF:
            return best
        tau = tau_chg * (1.0 + BEYOND_CHANGE)
        for _ in range(self.opt.max_doublings + 1):
            f = self._evaluate_trial(tau)
            if not f < best:
                break
            best = f
            self.best = self.trial
            tau *= 2.0
        return best

    def _step(self) -> bool:
        pb = self.pb
        g_s_sq = self._gradient_on_support()
        a_g_s_sq = float(torch.dot(self.a_g_s, self.a_g_s))
        tau_opt = tau_optimal(g_s_sq, a_g_s_sq, pb.lam)
        off = self.g.abs().masked_fill_(self.mask, 0.0)  # |g| off the support (0 if none)
        M = pb.comm.max_scalar(float(off.max()) if off.numel() else 0.0)
        tau_chg = self._support_change_step(M) if M > 0 else INF

        # 1. tau_opt keeps the support: an exact line minimisation, no trial needed.
        if 0 < tau_opt < tau_chg:
            return self._take_support_step(tau_opt)
        # 2. The support must change to do better: compare trials with the on-support step.
        f_opt = self.f - decrease_at_optimal(g_s_sq, a_g_s_sq, pb.lam)
        f_trial = self._support_changing_trials(tau_chg)
        # 3. Nothing else applies: the 1/L step.
        lipschitz_step = False
        if not f_trial < self.f and tau_opt == 0:
            if self.L == 0:
                self.L = lipschitz_constant(pb, self.opt.power_iters)
            f = self._evaluate_trial(1.0 / self.L)
            if f < self.f:
                self.best, f_trial, lipschitz_step = self.trial, f, True
        if f_trial < self.f and f_trial <= f_opt:
            self._adopt_best(f_trial)
            self.steps["steps_lip" if lipschitz_step else "steps_chg"] += 1
            return True
        return tau_opt > 0 and self._take_support_step(tau_opt)

    def _take_support_step(self, tau: float) -> bool:
        """x <- x - tau g_S on the same support, r <- r + tau A g_S."""
        pb = self.pb
        val = self.val + self.g_s * f32(-tau)
        r = self.r + tau * self.a_g_s
        f = pb.from_residual(self.S, val, r)
        if not f < self.f:  # rounding ate the decrease: converged
            return False
        self.val, self.r, self.f = val, r, f
        self._sync_dense()
        self.steps["steps_opt"] += 1
        return True

    def _adopt_best(self, f: float) -> None:
        self.mask[self.S] = False
        self.w.zero_()
        self.S, self.val, self.r = self.best
        self.f = f
        self._sync_dense()

    def _sync_dense(self) -> None:
        self.w[self.S] = self.val
        self.mask[self.S] = True


def solve_iht(pb: ShardedProblem, opt):
    return ShardedIht(pb, opt).run()
