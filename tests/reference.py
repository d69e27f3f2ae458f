"""Plain float64 NumPy references for every kernel and solver (small problems only)."""
from __future__ import annotations

import itertools

import numpy as np


def to64(A) -> np.ndarray:
    """A as a float64 ndarray (bfloat16 and torch inputs included)."""
    if hasattr(A, "detach"):
        A = A.detach().cpu().float().numpy()
    return np.asarray(A).astype(np.float64)


def objective(A, w, w_bar, lam, b=None, alpha=None) -> float:
    A = to64(A)
    w = np.asarray(w, np.float64)
    w_bar = np.asarray(w_bar, np.float64)
    b = A @ w_bar if b is None else np.asarray(b, np.float64)
    f = 0.5 * np.sum((b - A @ w) ** 2) + 0.5 * lam * np.sum((w - w_bar) ** 2)
    return float(f + (0.0 if alpha is None else np.dot(np.asarray(alpha, np.float64), w)))


def gradient(A, w, w_bar, lam, b=None, alpha=None) -> np.ndarray:
    A = to64(A)
    b = A @ w_bar if b is None else np.asarray(b, np.float64)
    g = -A.T @ (b - A @ w) + lam * (w - w_bar)
    return g if alpha is None else g + alpha


def topk_abs(x, k) -> np.ndarray:
    """k largest |x|, ties to the smaller index, returned ascending."""
    x = np.asarray(x, np.float64)
    order = np.lexsort((np.arange(len(x)), -np.abs(x)))
    return np.sort(order[:k])


def backsolve(A, S, w_bar, lam, b=None, alpha=None) -> np.ndarray:
    """Dense w, optimal on support S (solves the k x k normal equations directly)."""
    A = to64(A)
    S = np.asarray(S)
    b = A @ w_bar if b is None else np.asarray(b, np.float64)
    AS = A[:, S]
    rhs = AS.T @ b + lam * w_bar[S] - (0 if alpha is None else alpha[S])
    G = AS.T @ AS + lam * np.eye(len(S))
    w = np.zeros(A.shape[1])
    w[S] = np.linalg.lstsq(G, rhs, rcond=None)[0] if lam == 0 else np.linalg.solve(G, rhs)
    return w


def best_subset(A, w_bar, k, lam, b=None, alpha=None):
    """Exhaustive search: (objective, support) of the optimum. Tiny p only."""
    best = (np.inf, None)
    for S in itertools.combinations(range(A.shape[1]), k):
        w = backsolve(A, list(S), w_bar, lam, b, alpha)
        f = objective(A, w, w_bar, lam, b, alpha)
        if f < best[0]:
            best = (f, np.array(S))
    return best


def iht(A, w_bar, k, lam, iters, b=None, eps=1e-3, max_doublings=10):
    """CHITA-style IHT (tau_opt / tau_chg / doubling), without the final backsolve.

    Returns the objective history (start, then after each step)."""
    A = to64(A)
    w_bar = np.asarray(w_bar, np.float64)
    b = A @ w_bar if b is None else np.asarray(b, np.float64)
    p = A.shape[1]
    S = topk_abs(w_bar, k)
    w = np.zeros(p)
    w[S] = w_bar[S]
    f = objective(A, w, w_bar, lam, b)
    hist = [f]
    for _ in range(iters):
        g = gradient(A, w, w_bar, lam, b)
        gS = np.zeros(p)
        gS[S] = g[S]
        gg = gS @ gS
        denom = np.sum((A @ gS) ** 2) + lam * gg
        tau_opt = gg / denom if gg > 0 else 0.0
        out = np.ones(p, bool)
        out[S] = False
        M = np.abs(g[out]).max() if out.any() else 0.0
        taus = [abs(w[j]) / (M + np.sign(w[j]) * g[j]) for j in S
                if w[j] != 0 and M + np.sign(w[j]) * g[j] > 0]
        tau_chg = min(taus) if (taus and M > 0) else np.inf
        if 0 < tau_opt < tau_chg:
            w = w - tau_opt * gS
        else:
            f_opt = f - (gg * gg / (2 * denom) if gg > 0 else 0.0)
            best_f, best_w = np.inf, None
            tau = tau_chg * (1 + eps)
            for _d in range(max_doublings + 1):
                if not np.isfinite(tau):
                    break
                v = w - tau * g
                T = topk_abs(v, k)
                wt = np.zeros(p)
                wt[T] = v[T]
                ft = objective(A, wt, w_bar, lam, b)
                if not ft < best_f:
                    break
                best_f, best_w, best_S = ft, wt, T
                tau *= 2
            if best_w is not None and best_f < f and best_f <= f_opt:
                w, S = best_w, best_S
            elif tau_opt > 0:
                w = w - tau_opt * gS
            else:
                break
        f = objective(A, w, w_bar, lam, b)
        hist.append(f)
    return np.array(hist)
