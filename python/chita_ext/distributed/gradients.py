"""Sharded gradient collection: each rank computes the rows of its own samples, an
all-to-all turns rows into columns, and each rank ends with its column block of A.

Layout (R ranks, n = n_samples // batch_rows rows, p weights):

* rows: rank r computes the contiguous block of rows ``balanced_ranges(n, R)[r]``. With
  ``sharded_data=False`` (the default) every rank iterates the *same* ``data`` stream and
  rank r skips the samples of the rows before its block, so row i is made of samples
  ``i*m .. i*m+m-1`` of the stream, exactly as in the single-process
  :func:`chita_ext.collect_gradients`. With ``sharded_data=True`` each rank's ``data``
  yields only its own samples (e.g. a ``DistributedSampler`` without shuffling) and the
  global row order is rank 0's rows, then rank 1's, ...: the single-process store of the
  concatenated streams.
* columns: rank r ends with the columns ``balanced_ranges(p, R)[r]`` of the flattened
  prunable parameters (in :class:`~chita_ext.PrunableParams` order) for all n rows.

Memory: rows are exchanged ``chunk`` at a time, so besides its store a rank holds about
three ``chunk x p`` buffers (the gradients, the send and the receive buffer).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..gradients import (
    DTYPES,
    GradientStore,
    SampleStream,
    data_size,
    per_sample_gradients,
)
from ..params import resolve_params
from .comm import Comm
from .layout import balanced_ranges


class ShardedGradientStore(GradientStore):
    """This rank's column block of the gradient matrix: a :class:`~chita_ext.GradientStore`
    of ``p_local`` columns and all n rows.

    Attributes
    ----------
    A_local : (n, p_local) column-major matrix (the ``A`` of the base class): pass it to
        :func:`chita_ext.distributed.solve`.
    column_range : tuple
        ``(begin, end)``: the global columns (flattened prunable weights) held here.
    p_total : int
        Columns over all ranks. ``p`` (the base class's) is the local count.
    mean_grad : numpy.ndarray
        The mean gradient over all n rows, this rank's slice (float64).
    scale : float
        ``sqrt(m / n)`` as in the single-process store.
    """

    def __init__(self, p_local: int, n: int, dtype: str, out, column_range, p_total: int):
        super().__init__(p_local, n, dtype, out)
        self.column_range = tuple(int(c) for c in column_range)
        self.p_total = int(p_total)

    @property
    def A_local(self):
        return self.A


def _skip(stream: SampleStream, count: int, piece: int) -> None:
    """Draw and drop ``count`` samples, ``piece`` at a time (bounded memory)."""
    while count > 0:
        use = min(piece, count)
        stream.take(use)
        count -= use


def _flatten(rows: dict, names, c: int) -> torch.Tensor:
    """``{name: (c, *shape)}`` as one (c, p) tensor in parameter order."""
    return torch.cat([rows[name].reshape(c, -1) for name in names], dim=1)


def _exchange(comm: Comm, send: torch.Tensor, send_counts, recv_counts) -> torch.Tensor:
    """all-to-all of a flat tensor as raw bytes (a pure move: every dtype, every backend)."""
    size = send.element_size()
    recv = comm.all_to_all(send.contiguous().view(torch.uint8), [c * size for c in send_counts],
                           [c * size for c in recv_counts])
    return recv.view(send.dtype)


def collect_gradients(model, loss_fn, data, n_samples: int, *, params=None,
                      dtype: str = "float32", batch_rows: int = 1, out=None,
                      chunk: int | None = None, max_chunk_bytes: int = 256 << 20,
                      sharded_data: bool = False, stream=None, group=None,
                      stats=None) -> ShardedGradientStore:
    """:func:`chita_ext.collect_gradients` over the ranks of a process group.

    Collective. Every rank must hold the same model weights. Parameters are those of the
    single-process function, plus:

    Parameters
    ----------
    n_samples : int
        Samples over all ranks; ``n = n_samples // batch_rows`` rows in all.
    out : path, optional
        This rank's memory-mapped ``.npy`` file (give each rank its own path).
    chunk : int, optional
        Rows per rank per exchange round (default: a chunk's gradients under
        ``max_chunk_bytes``).
    sharded_data : bool
        False: every rank iterates the same ``data`` and takes its block of rows from it.
        True: each rank's ``data`` holds just its own samples, in global row order.
    stream : SampleStream, optional
        Draw from this stream instead of a fresh pass over ``data`` (CHITA++ sub-samples),
        the same stream state on every rank (``sharded_data=False`` only). Every rank
        draws all ``n * batch_rows`` samples from it, skipping those of the other ranks'
        rows, so it is left where the single-process :func:`chita_ext.collect_gradients`
        leaves it.
    group : torch.distributed.ProcessGroup, optional
    stats : CommStats, optional
        Count this call's collectives here (a fresh record by default).

    Returns
    -------
    ShardedGradientStore
        This rank's columns for all n rows, with its slice of the mean gradient.
    """
    comm = Comm(group, stats)
    R, rank = comm.size, comm.rank
    sel = resolve_params(model, params)
    if stream is not None and sharded_data:
        raise ValueError("stream= draws every rank's rows from one shared stream; it cannot "
                         "be combined with sharded_data=True")
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}; pass 'float32' or 'bfloat16'")
    if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples={n_samples!r} must be a positive int")
    if not isinstance(batch_rows, (int, np.integer)) or not 1 <= batch_rows <= n_samples:
        raise ValueError(f"batch_rows={batch_rows!r} must be an int in [1, n_samples={n_samples}]")
    m, rows, p = int(batch_rows), int(n_samples) // int(batch_rows), sel.p
    row_blocks, col_blocks = balanced_ranges(rows, R), balanced_ranges(p, R)
    (rb, re), (cb, ce) = row_blocks[rank], col_blocks[rank]
    size = data_size(data)
    need = (re - rb) * m if sharded_data else re * m
    problem = None
    if stream is None and size is not None and need > size:
        problem = f"rank {rank}: data has {size} samples but its rows need {need}"
    agreed = comm.gather_objects((p, rows, dtype, bool(sharded_data), problem))
    if any(a[:4] != agreed[0][:4] for a in agreed):
        raise ValueError("ranks disagree on (p, rows, dtype, sharded_data): "
                         f"{[a[:4] for a in agreed]}; pass the same model, n_samples, "
                         "batch_rows and options on every rank")
    problems = [a[4] for a in agreed if a[4]]
    if problems:
        raise ValueError("; ".join(problems) + "; pass a smaller n_samples or more data")
    if chunk is None:
        chunk = int(max(1, min(-(-rows // R), max_chunk_bytes // (4 * p))))
    if not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk={chunk!r} must be a positive int")

    store = ShardedGradientStore(ce - cb, rows, dtype, out, (cb, ce), p)
    store.names, store.shapes = list(sel.names), [tuple(t.shape) for t in sel.params]
    store.batch_rows, store.n_samples = m, rows * m
    store.scale = math.sqrt(m / rows)
    shared = stream is not None
    stream = stream if shared else SampleStream(data, cycle=False)
    if not sharded_data:
        _skip(stream, rb * m, chunk * m)
    chunks = per_sample_gradients(model, loss_fn, data, (re - rb) * m, params=sel,
                                  batch_rows=m, chunk=chunk, stream=stream)
    total = torch.zeros(p, dtype=torch.float64)
    rounds = max(-(-(b - a) // chunk) for a, b in row_blocks)
    store_dtype = DTYPES[dtype]
    for t in range(rounds):
        sent = [max(0, min(chunk, (b - a) - t * chunk)) for a, b in row_blocks]
        c = sent[rank]
        if c:
            _, g = next(chunks)
            G = _flatten(g, sel.names, c)
            total += G.double().sum(0).cpu()
            send = torch.cat([(G[:, a:b] * store.scale).to(store_dtype).reshape(-1)
                              for a, b in col_blocks])
        else:
            send = torch.zeros(0, dtype=store_dtype, device=comm.device)
        recv = _exchange(comm, send, [c * (b - a) for a, b in col_blocks],
                         [s * (ce - cb) for s in sent])
        recv, at = recv.cpu(), 0
        for q, (a, _) in enumerate(row_blocks):
            cq = sent[q]
            if cq:
                block = recv[at:at + cq * (ce - cb)].reshape(cq, ce - cb)
                store.buffer[:, a + t * chunk:a + t * chunk + cq].copy_(block.T)
                at += cq * (ce - cb)
    chunks.close()  # the model's train/eval mode is restored here
    if shared:  # leave the shared stream after all rows, as the single-process call does
        _skip(stream, (rows - re) * m, chunk * m)
    # The mean gradient: every rank's column sums for my columns, added in rank order.
    parts = _exchange(comm, total.to(comm.device), [b - a for a, b in col_blocks],
                      [ce - cb] * R).cpu().reshape(R, ce - cb)
    column_sum = torch.zeros(ce - cb, dtype=torch.float64)
    for q in range(R):
        column_sum += parts[q]
    store.mean_grad = (column_sum / rows).numpy()
    store.flush()
    return store
