"""The SolveResult a distributed method returns on each rank."""
from __future__ import annotations

import time

import numpy as np
import torch

from ..result import SolveResult
from .problem import ShardedProblem


def make_result(pb: ShardedProblem, S: torch.Tensor, val: torch.Tensor, objective: float,
                history, iterations: int, method: str, converged: bool, start: float,
                info: dict | None = None) -> SolveResult:
    """This rank's slice of the solution, with the global objective, size and history.

    Collective: one all-reduce sums the support sizes and checks that every rank holds the
    same objective (ranks that disagree would mean a broken determinism assumption: every
    rank must run the same build on the same kind of device).
    """
    f_max, neg_f_min = pb.comm.max(torch.tensor([objective, -objective],
                                                dtype=torch.float64)).tolist()
    size = int(pb.comm.sum_scalars(float(S.numel()))[0])
    if f_max != -neg_f_min:
        raise RuntimeError(f"ranks ended with different objectives ({-neg_f_min} .. {f_max}); "
                           "run every rank with the same chita_ext build and device type")
    support = S.cpu().numpy().astype(np.int64)
    w = np.zeros(pb.p_local, dtype=np.float32)
    w[support] = val.cpu().numpy()
    extra = {
        "global_support": support + pb.offset,
        "column_range": (pb.offset, pb.offset + pb.p_local),
        "p": pb.p,
        "support_size": size,
        "comm": pb.comm.stats.as_dict(),
        "ranks": pb.comm.size,
    }
    extra.update(info or {})
    return SolveResult(w=w, support=support, objective=float(objective),
                       history=np.asarray(history, dtype=np.float64), iterations=int(iterations),
                       seconds=time.perf_counter() - start, method=method,
                       converged=bool(converged), info=extra)
