"""L = ||A||_2^2 + lam by power iteration on sharded columns (cpp/src/solvers/lipschitz.cpp).

The C++ start vector is a fixed +-1 pattern: entry j is the low bit of the (j+1)-th state
of a xorshift32 generator. Each rank needs the entries of its own column block, so the
generator is jumped ahead to the block's offset (xorshift is linear over GF(2): a jump is
a 32 x 32 bit-matrix power) and then run in lanes.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .problem import ShardedProblem
from .step_size import f32

_SEED = 2463534242
_M32 = np.uint64(0xFFFFFFFF)


def _step(s: np.ndarray) -> np.ndarray:
    """One xorshift32 step on an array of states (held in uint64, kept to 32 bits)."""
    s = s ^ ((s << np.uint64(13)) & _M32)
    s = s ^ (s >> np.uint64(17))
    return s ^ ((s << np.uint64(5)) & _M32)


def _apply(cols: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The GF(2) matrix with columns ``cols`` (images of the 32 unit states) applied to s."""
    bits = (s[..., None] >> np.arange(32, dtype=np.uint64)) & np.uint64(1)
    return np.bitwise_xor.reduce(np.where(bits == 1, cols, np.uint64(0)), axis=-1)


def _power(cols: np.ndarray, e: int) -> np.ndarray:
    """Columns of the e-th power of the step matrix given by ``cols``."""
    out = np.uint64(1) << np.arange(32, dtype=np.uint64)  # identity
    base = cols
    while e:
        if e & 1:
            out = _apply(base, out)
        base = _apply(base, base)
        e >>= 1
    return out


def start_pattern(offset: int, length: int) -> np.ndarray:
    """Entries ``offset .. offset+length-1`` of the C++ +-1 start vector (float32)."""
    if length == 0:
        return np.zeros(0, np.float32)
    one_step = _step(np.uint64(1) << np.arange(32, dtype=np.uint64))
    state = _apply(_power(one_step, offset), np.array(_SEED, dtype=np.uint64))
    lanes = max(1, math.isqrt(length))
    per_lane = -(-length // lanes)
    jump = _power(one_step, per_lane)
    starts = np.empty(lanes, dtype=np.uint64)
    for lane in range(lanes):  # lane l starts at the state before entry l * per_lane
        starts[lane] = state
        state = _apply(jump, state)
    bits = np.empty((lanes, per_lane), dtype=np.uint64)
    s = starts
    for t in range(per_lane):
        s = _step(s)
        bits[:, t] = s & np.uint64(1)
    return np.where(bits.reshape(-1)[:length] == 1, 1.0, -1.0).astype(np.float32)


def lipschitz_constant(pb: ShardedProblem, power_iters: int) -> float:
    """1.02 * (power-iteration estimate of ||A||_2^2) + lam; collective."""
    comm = pb.comm
    v = torch.from_numpy(start_pattern(pb.offset, pb.p_local)).to(pb.device)
    v_norm = math.sqrt(comm.sum_scalars(pb.dot(v, v))[0])
    estimate = 0.0
    for _ in range(power_iters):
        if not v_norm > 0:
            break
        v = v * f32(1.0 / v_norm)
        u = comm.sum(pb.ax_dense(v))            # A v: one all-reduce of n doubles
        z = pb.atr(u.float())                   # A^T A v, local
        estimate = math.sqrt(comm.sum_scalars(pb.dot(z, z))[0])
        v, v_norm = z, estimate
    return 1.02 * estimate + pb.lam
