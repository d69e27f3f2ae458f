"""The exact ridge solution on a sharded support S (cpp/src/solvers/common.cpp, backsolve).

In d = x - w_bar_S: ``(A_S^T A_S + lam I) d = A_S^T r0 - alpha_S``, r0 = b - A_S w_bar_S.

* |S| > n (the usual case), Woodbury: ``K = A_S A_S^T`` is the sum of the ranks'
  ``gram_rows`` on their part of S, so one all-reduce of n^2 + 2n doubles gives every rank
  K, r0 and A_S alpha_S; every rank factors the same n x n system and keeps its slice of
  ``d = A_S^T (lam I + K)^{-1} (r0 + A_S alpha_S / lam) - alpha_S / lam``.
* |S| <= n: the k x k system needs cross-rank column products, so the |S| <= n support
  columns themselves are all-reduced (each rank fills its own rows of a zero |S| x n
  buffer: at most n^2 values, the same order as the Woodbury Gram) and every rank solves
  the k x k system as the single-process solver does.
"""
from __future__ import annotations

import torch

from .. import kernels
from .linalg import cholesky_solve, cholesky_with_jitter
from .problem import ShardedProblem, as_tensor


def support_columns(pb: ShardedProblem, S: torch.Tensor) -> torch.Tensor:
    """A_local[:, S] as a float32 (|S|, n) tensor (bfloat16 widens exactly)."""
    A = pb.A
    if isinstance(A, torch.Tensor):
        return A[:, S.to(A.device)].T.float().contiguous()
    import numpy as np

    return torch.from_numpy(np.ascontiguousarray(A[:, S.cpu().numpy()].T.astype(np.float32)))


def backsolve(pb: ShardedProblem, S: torch.Tensor, b64: torch.Tensor | None = None):
    """Values (float32, length |S_local|) of the ridge optimum on the global support whose
    local part is S (local indices, ascending). Collective. ``b64`` overrides pb's b."""
    comm, n, lam = pb.comm, pb.n, pb.lam
    b64 = pb.b64 if b64 is None else b64
    counts = comm.gather_ints(S.numel())
    k, first = sum(counts), sum(counts[:comm.rank])
    wbar_s = pb.w_bar[S]
    alpha_s = pb.alpha[S].double() if pb.alpha is not None else None
    dev = pb.device
    if k <= n:
        cols = torch.zeros((k, n), dtype=torch.float64, device=dev)
        alpha_all = torch.zeros(k, dtype=torch.float64, device=dev)
        if S.numel():
            cols[first:first + S.numel()] = support_columns(pb, S).to(dev).double()
            if alpha_s is not None:
                alpha_all[first:first + S.numel()] = alpha_s
        packed = comm.sum(torch.cat([pb.ax_sparse(S, wbar_s), cols.reshape(-1), alpha_all]))
        r0 = b64 - packed[:n]
        A_S = packed[n:n + k * n].reshape(k, n).float().T  # n x k, column-major
        every = torch.arange(k, dtype=torch.int64, device=dev)
        G = torch.from_numpy(kernels.gram_cols(A_S, every, threads=pb.threads))
        G += lam * torch.eye(k, dtype=torch.float64)
        c = as_tensor(kernels.atr(A_S, r0.float(), threads=pb.threads)).double().cpu()
        if alpha_s is not None:
            c = c - packed[n + k * n:].cpu()
        d = cholesky_solve(cholesky_with_jitter(G), c)[first:first + S.numel()].to(dev)
    else:
        if pb.alpha is not None and lam <= 0:
            raise ValueError(f"lam=0 with a linear term alpha needs k <= n (k={k}, n={n}); "
                             "pass lam > 0")
        parts = [pb.ax_sparse(S, wbar_s), pb.gram_rows(S).to(dev).reshape(-1)]
        if alpha_s is not None:
            parts.append(pb.ax_sparse(S, pb.alpha[S]))
        packed = comm.sum(torch.cat(parts))
        r0 = b64 - packed[:n]
        K = packed[n:n + n * n].reshape(n, n).cpu()
        K += lam * torch.eye(n, dtype=torch.float64)
        rhs = r0.cpu()
        if alpha_s is not None:
            rhs = rhs + packed[n + n * n:].cpu() / lam
        y = cholesky_solve(cholesky_with_jitter(K), rhs).float().to(dev)
        d = pb.atr_subset(y, S).double()
        if alpha_s is not None:
            d = d - alpha_s / lam
    return (wbar_s.double() + d).float()
