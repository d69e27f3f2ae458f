"""block (block-diagonal approximation, one global budget) on a sharded problem, as
cpp/src/solvers/block.cpp.

Blocks are cut on global columns exactly as the single-process solver cuts them. A block
inside one rank's shard is solved by that rank alone with the compiled greedy
(``chita_ext.solve(method="greedy", greedy_rate=0)`` on the block: the same path, values
and backsolve as the block solver's); a block that spans a shard boundary (at most R - 1
of them) runs its greedy path on all ranks together (:mod:`.greedy_path`). The path
values of every block (``cap + 1`` doubles each, O(k + blocks) in all) are all-reduced
once, every rank runs the same global budget split, and each block is finished by its
owner (or, spanning, by all ranks) with a backsolve on its path prefix.
"""
from __future__ import annotations

import heapq
import math
import time

import numpy as np
import torch

from ..solve import solve as solve_single
from .backsolve import backsolve
from .greedy_path import GreedyPath
from .problem import ShardedProblem
from .result import make_result


def cut(p: int, blocks, block_size: int) -> list:
    """Global ``(begin, end)`` of every block: each layer split into pieces of block_size."""
    edges = [0] + [int(e) for e in (blocks or []) if int(e) != 0]
    if any(b <= a for a, b in zip(edges, edges[1:])) or edges[-1] > p:
        raise ValueError(f"blocks={blocks!r} must be increasing layer boundaries in (0, p={p}]")
    if edges[-1] != p:
        edges.append(p)
    if not (isinstance(block_size, (int, np.integer)) and block_size >= 0):
        raise ValueError(f"block_size={block_size!r} must be an integer >= 0 (0: whole layers)")
    out = []
    for a, b in zip(edges, edges[1:]):
        size = block_size if block_size > 0 else b - a
        out.extend((s, min(s + size, b)) for s in range(a, b, size))
    return out


def _caps(pb: ShardedProblem, pieces) -> list:
    share = pb.k / pb.p
    caps = []
    for a, b in pieces:
        size = b - a
        cap = min(size, pb.k) if len(pieces) == 1 else \
            min(size, 2 * math.ceil(share * size) + 16)
        caps.append(min(cap, pb.k))
    return caps


def _local_greedy(pb: ShardedProblem, a: int, b: int, k: int):
    """The compiled greedy (OMP order) on this rank's block [a, b) (global), k columns."""
    lo, hi = a - pb.offset, b - pb.offset
    return solve_single(
        pb.A[:, lo:hi], pb.w_bar[lo:hi], k, lam=pb.lam, method="greedy", greedy_rate=0.0,
        alpha=None if pb.alpha is None else pb.alpha[lo:hi], check_finite=False,
        threads=pb.threads)


def _agree_no_error(pb: ShardedProblem, error):
    """Raise on every rank if the local work of any rank failed."""
    failed = pb.comm.sum_scalars(0.0 if error is None else 1.0)[0]
    if error is not None:
        raise error
    if failed:
        raise RuntimeError(f"method='block' failed on {int(failed)} other rank(s); see their "
                           "error")


def _budget(values, k: int) -> list:
    """Columns per block: repeatedly the largest next decrease among all paths."""
    kb = [0] * len(values)
    heap = [(-(v[0] - v[1]), -i) for i, v in enumerate(values) if len(v) > 1]
    heapq.heapify(heap)  # (gain, i) max-first, as std::priority_queue<pair<double, size_t>>
    used = 0
    while used < k and heap:
        _, neg_i = heapq.heappop(heap)
        i = -neg_i
        kb[i] += 1
        t = kb[i]
        if t + 1 < len(values[i]):
            heapq.heappush(heap, (-(values[i][t] - values[i][t + 1]), -i))
        used += 1
    return kb


def solve_block(pb: ShardedProblem, opt):
    start = time.perf_counter()
    if pb.alpha is not None and pb.lam <= 0:
        raise ValueError("this method needs lam > 0 when a linear term alpha is given")
    pieces = cut(pb.p, opt.blocks, opt.block_size)
    caps = _caps(pb, pieces)
    owners = [pb.layout.owners(a, b) for a, b in pieces]
    mine = [i for i, o in enumerate(owners) if o == [pb.comm.rank]]
    spanning = [i for i, o in enumerate(owners) if len(o) > 1]
    # 1. Greedy paths: local blocks alone, spanning blocks on all ranks together.
    values, error = {}, None
    try:
        for i in mine:
            values[i] = list(_local_greedy(pb, *pieces[i], caps[i]).history)
    except (ValueError, TypeError, RuntimeError) as exc:
        error = exc
    _agree_no_error(pb, error)
    paths = {}
    for i in spanning:
        paths[i] = GreedyPath(pb, *pieces[i])
        values[i] = paths[i].grow(caps[i])
    # 2. Every path's values on every rank (first owner fills), one all-reduce.
    starts = np.cumsum([0] + [c + 1 for c in caps])
    flat = torch.zeros(int(starts[-1]), dtype=torch.float64)
    for i, v in values.items():
        if owners[i][0] == pb.comm.rank:
            flat[starts[i]:starts[i] + len(v)] = torch.tensor(v, dtype=torch.float64)
    flat = pb.comm.sum(flat).tolist()
    all_values = [flat[starts[i]:starts[i + 1]] for i in range(len(pieces))]
    kb = _budget(all_values, pb.k)
    # 3. Finish each block on its path prefix.
    idx, val = [], []
    try:
        for i in mine:
            if kb[i] > 0:
                res = _local_greedy(pb, *pieces[i], kb[i])
                local = torch.as_tensor(res.support, device=pb.device) + (pieces[i][0] - pb.offset)
                idx.append(local)
                val.append(torch.as_tensor(res.w[res.support], device=pb.device))
    except (ValueError, TypeError, RuntimeError) as exc:
        error = exc
    _agree_no_error(pb, error)
    for i in spanning:
        if kb[i] > 0:
            S = paths[i].local_support(kb[i])
            idx.append(S)
            val.append(backsolve(pb, S, b64=paths[i].b64))
    S = torch.cat(idx) if idx else torch.zeros(0, dtype=torch.int64, device=pb.device)
    x = torch.cat(val) if val else torch.zeros(0, dtype=torch.float32, device=pb.device)
    order = torch.argsort(S)
    S, x = S[order], x[order]
    f, _ = pb.evaluate(S, x)
    return make_result(pb, S, x, f, [f], len(pieces), "block", True, start)
