"""Exact global top-k by magnitude over column-sharded vectors: a distributed radix select.

The keys are the bits of ``|x|`` (for non-negative floats the unsigned bit order is the
value order), 31 bits once the sign is dropped. Each pass histograms the next
``radix_bits`` bits of the keys still in play, all-reduces the histogram (``2**radix_bits``
int64 counts), and every rank reads off the same boundary bin: keys above it are in, keys
below are out, the boundary bin is refined by the next pass. It stops as soon as the
boundary bin holds exactly the entries still needed, or after the last bits, when the
boundary bin is a single key value: those ties go to the smallest global indices, by one
all-reduce of the R per-rank tie counts (ranks hold increasing column blocks, so rank
order is index order). The result is exactly :func:`chita_ext.kernels.topk_abs` on the
concatenated vector. Communication: at most ``ceil(31 / radix_bits)`` histograms plus R
ints; nothing of length p ever moves.
"""
from __future__ import annotations

import numpy as np
import torch

from .comm import Comm

DEFAULT_RADIX_BITS = 8  # at most 4 passes of 256 bins (2 KB each) cover the 31 bits of |x|
_KEY_BITS = 31
MAX_RADIX_BITS = 16  # 65536 bins: beyond that a histogram outweighs any n-vector


def abs_keys(x: torch.Tensor) -> torch.Tensor:
    """``|x|`` as ordered int32 bit patterns (x float32)."""
    return x.contiguous().view(torch.int32) & 0x7FFFFFFF


def select_topk(comm: Comm, x: torch.Tensor, k: int,
                radix_bits: int = DEFAULT_RADIX_BITS) -> torch.Tensor:
    """Local indices (int64, ascending, on x's device) of this rank's entries among the k
    largest ``|x|`` of the concatenation of every rank's ``x`` (float32, 1-D; may be empty).

    Ties in ``|x|`` go to the smaller global index. Collective: every rank must call it with
    the same k, ``1 <= k <= sum of the local lengths`` (the caller's responsibility).
    """
    key = abs_keys(x)
    chosen = torch.zeros(key.shape, dtype=torch.bool, device=x.device)
    cand = None  # every entry is a candidate until the first pass narrows them
    need = int(k)
    hi = _KEY_BITS
    while hi > 0:
        width = min(radix_bits, hi)
        shift = hi - width
        keys = key if cand is None else key[cand]
        bucket = ((keys >> shift) & ((1 << width) - 1)).long()
        if cand is None:
            cand = torch.arange(key.numel(), device=x.device)
        hist = torch.bincount(bucket, minlength=1 << width)
        h = comm.sum(hist, "topk_histogram").cpu().numpy()
        suffix = np.cumsum(h[::-1])[::-1]            # suffix[b] = count in bins >= b
        boundary = int(np.flatnonzero(suffix >= need)[-1])
        chosen[cand[bucket > boundary]] = True
        need -= int(suffix[boundary] - h[boundary])
        cand = cand[bucket == boundary]
        if h[boundary] == need:                      # the whole boundary bin is in
            chosen[cand] = True
            return torch.nonzero(chosen).flatten()
        hi = shift
    # One key value left, more entries with it than needed: smallest global indices win.
    counts = comm.gather_ints(cand.numel(), "topk_ties")
    before = sum(counts[:comm.rank])
    take = min(max(need - before, 0), cand.numel())
    chosen[cand[:take]] = True
    return torch.nonzero(chosen).flatten()


def topk_abs(x_local, k: int, *, group=None, radix_bits: int = DEFAULT_RADIX_BITS):
    """Distributed :func:`chita_ext.kernels.topk_abs`: this rank's part of the global top-k.

    Parameters
    ----------
    x_local : numpy.ndarray or torch.Tensor, shape (p_r,)
        This rank's contiguous block of the global vector (rank 0 holds the first block,
        rank 1 the next, ...). Converted to float32.
    k : int
        Global count, ``1 <= k <= p`` (p = the sum of the local lengths); same on every rank.
    group : torch.distributed.ProcessGroup, optional
    radix_bits : int
        Bits of ``|x|`` resolved per pass (1..16); each pass all-reduces ``2**radix_bits``
        counts.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        int64 local indices (ascending) of this rank's entries in the global top-k, as a
        numpy array for numpy input, a tensor on x's device for tensor input. Add the
        rank's column offset for global indices.
    """
    comm = Comm(group)
    if not (isinstance(radix_bits, int) and 1 <= radix_bits <= MAX_RADIX_BITS):
        raise ValueError(f"radix_bits={radix_bits!r} must be an int in [1, {MAX_RADIX_BITS}]")
    is_numpy = not isinstance(x_local, torch.Tensor)
    x = torch.as_tensor(np.ascontiguousarray(x_local, dtype=np.float32) if is_numpy
                        else x_local.detach().float().contiguous())
    # Local problems are counted, not raised, so that every rank leaves together.
    bad_shape = x.dim() != 1
    bad_value = not bad_shape and not bool(torch.isfinite(x).all())
    p, shapes, values = comm.sum(torch.tensor(
        [0 if bad_shape else x.numel(), int(bad_shape), int(bad_value)],
        dtype=torch.int64)).tolist()
    if shapes:
        raise ValueError(f"x_local must be 1-D on every rank ({shapes} rank(s) passed another "
                         "shape)")
    if values:
        raise ValueError(f"x_local contains NaN or Inf on {values} rank(s)")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= p:
        raise ValueError(f"k={k!r} must be an int in [1, p={p}] (p summed over ranks)")
    idx = select_topk(comm, x, int(k), radix_bits)
    return idx.cpu().numpy() if is_numpy else idx
