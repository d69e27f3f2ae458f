"""mp and bso on a sharded problem (cpp/src/solvers/mp.cpp, bso.cpp)."""
from __future__ import annotations

import time

import torch

from .backsolve import backsolve
from .problem import ShardedProblem
from .result import make_result
from .select import select_topk


def top_k_of(pb: ShardedProblem, x: torch.Tensor, k: int | None = None):
    """(local indices, values) of this rank's part of the global top-k of |x|."""
    idx = select_topk(pb.comm, x, pb.k if k is None else k, pb.radix_bits)
    return idx, x[idx]


def solve_mp(pb: ShardedProblem, opt) -> object:
    """The k largest |w_bar| at their values."""
    start = time.perf_counter()
    S, val = top_k_of(pb, pb.w_bar)
    f, _ = pb.evaluate(S, val)
    return make_result(pb, S, val, f, [f], 0, "mp", True, start)


def solve_bso(pb: ShardedProblem, opt) -> object:
    """The exact ridge solution on the top-k support of w0 (or of w_bar)."""
    start = time.perf_counter()
    S = select_topk(pb.comm, pb.w0 if pb.w0 is not None else pb.w_bar, pb.k, pb.radix_bits)
    val = backsolve(pb, S)
    f, _ = pb.evaluate(S, val)
    return make_result(pb, S, val, f, [f], 0, "bso", True, start)
