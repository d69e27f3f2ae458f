"""Per-sample gradients (torch.func) written straight into a column-major store.

The store holds ``A = G * scale`` as a C-contiguous ``(p, n)`` buffer: row j is the n
gradient values of weight j ("gradient columns"), and its transpose is the ``(n, p)``
column-major matrix :func:`chita_ext.solve` streams. Gradients are computed ``chunk``
rows at a time, so peak extra memory is O(chunk x p) on top of the store itself.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch.func import functional_call, grad, vmap

from .params import PrunableParams, resolve_params

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class SampleStream:
    """Draws consecutive samples from an iterable of ``(inputs, targets)`` batches.

    Wraps around to the start (re-iterating ``data``, so a shuffled DataLoader gives a
    fresh order) when ``cycle`` is True; otherwise running out raises ValueError.
    """

    def __init__(self, data, cycle: bool = True):
        self.data, self.cycle = data, cycle
        self._it, self._buf, self.drawn = None, None, 0

    def _next_batch(self):
        if self._it is None:
            self._it = iter(self.data)
        try:
            return next(self._it)
        except StopIteration:
            if not self.cycle or self.drawn == 0:
                raise ValueError(f"data ran out after {self.drawn} samples; pass a smaller "
                                 "n_samples or more data") from None
            self._it = iter(self.data)
            return next(self._it)

    def take(self, n: int):
        """Return ``(inputs, targets)`` with exactly n samples (first dimension n)."""
        xs, ys, have = [], [], 0
        while have < n:
            if self._buf is None:
                batch = self._next_batch()
                if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                    raise TypeError("data must yield (inputs, targets) batches, got "
                                    f"{type(batch).__name__}")
                self._buf = (torch.as_tensor(batch[0]), torch.as_tensor(batch[1]))
            x, y = self._buf
            use = min(n - have, x.shape[0])
            xs.append(x[:use]), ys.append(y[:use])
            self._buf = None if use == x.shape[0] else (x[use:], y[use:])
            have += use
            self.drawn += use
        return torch.cat(xs), torch.cat(ys)


def data_size(data):
    """Number of samples in ``data`` when it can be known cheaply, else None."""
    ds = getattr(data, "dataset", None)
    if ds is not None and hasattr(ds, "__len__"):
        return len(ds)
    if isinstance(data, (list, tuple)):
        return sum(len(b[0]) for b in data)
    return None


class GradientStore:
    """Column-major gradient matrix ``A`` (n x p), float32 or bfloat16, RAM or memmap.

    Parameters
    ----------
    p, n : int
        Number of weights (columns of A) and rows.
    dtype : {"float32", "bfloat16"}
    out : str or path, optional
        File to memory-map the ``(p, n)`` buffer to; None keeps it in RAM.

    Attributes
    ----------
    buffer : torch.Tensor
        The ``(p, n)`` C-contiguous storage (shares memory with the memmap when ``out``).
    scale : float
        Factor applied to the raw gradients: ``sqrt(m / n)`` for m samples per row, so that
        ``A^T A`` estimates the empirical Fisher (1/N) sum_i g_i g_i^T.
    mean_grad : numpy.ndarray
        float64, the mean gradient over all samples (the ``alpha`` of the gradient term).
    """

    def __init__(self, p: int, n: int, dtype: str = "float32", out=None):
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r}; pass 'float32' or 'bfloat16'")
        self.p, self.n, self.dtype, self.path = int(p), int(n), dtype, None
        self.scale, self.batch_rows, self.n_samples = 1.0, 1, self.n
        self.mean_grad = np.zeros(self.p)
        self.names, self.shapes = [], []
        if out is None:
            self.buffer = torch.empty((self.p, self.n), dtype=DTYPES[dtype])
            self._mm = None
        else:
            self.path = os.fspath(out)
            npdt = np.float32 if dtype == "float32" else np.uint16  # bf16 bits on disk
            self._mm = np.lib.format.open_memmap(self.path, mode="w+", dtype=npdt,
                                                 shape=(self.p, self.n))
            t = torch.from_numpy(self._mm)
            self.buffer = t if dtype == "float32" else t.view(torch.bfloat16)

    @property
    def A(self):
        """The (n, p) column-major view solve() wants (no copy).

        float32 gives a Fortran-ordered numpy array (a memmap view when on disk);
        bfloat16 gives the torch tensor ``buffer.T``.
        """
        if self.dtype == "float32":
            return (self._mm if self._mm is not None else self.buffer.numpy()).T
        return self.buffer.T

    @property
    def nbytes(self) -> int:
        """Bytes held by the store."""
        return self.buffer.numel() * self.buffer.element_size()

    def write_rows(self, i0: int, rows: dict, sel: PrunableParams) -> None:
        """Write a chunk of gradient rows (``{name: (c, *shape)}``) as columns i0..i0+c."""
        for name, a, b in zip(sel.names, sel.offsets[:-1], sel.offsets[1:]):
            g = rows[name]
            c = g.shape[0]
            self.buffer[a:b, i0:i0 + c].copy_(g.reshape(c, b - a).T * self.scale)

    def fro_norm_sq(self, block: int = 1 << 16) -> float:
        """||A||_F^2, accumulated in float64 one block of weights at a time."""
        tot = 0.0
        for a in range(0, self.p, block):
            tot += float(self.buffer[a:a + block].double().square().sum())
        return tot

    def flush(self) -> None:
        """Push a memory-mapped store to disk."""
        if self._mm is not None:
            self._mm.flush()


def _check_loss(model, loss_fn, x, y):
    """Fail fast (before any long work) when loss_fn does not return a scalar."""
    with torch.no_grad():
        out = loss_fn(model(x[:2]), y[:2])
    if not isinstance(out, torch.Tensor) or out.dim() != 0:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"loss_fn returned {shape}, not a scalar; pass a batch-mean loss "
                         "such as torch.nn.CrossEntropyLoss() (reduction='mean')")


def per_sample_gradients(model, loss_fn, data, n_samples: int, *, params=None,
                         batch_rows: int = 1, chunk: int = 64, stream=None):
    """Yield ``(i0, {name: (c, *shape)})`` chunks of per-row gradients, in model dtype.

    Row i is the gradient of ``loss_fn`` on samples ``i*m .. i*m+m-1`` (m = batch_rows)
    at the current weights, computed with ``vmap(grad(...))``, BatchNorm in eval mode.
    """
    sel = resolve_params(model, params)
    stream = stream if stream is not None else SampleStream(data, cycle=False)
    rows, m = n_samples // batch_rows, batch_rows
    names = sel.names
    was_training = model.training
    model.eval()

    def loss_of(pvals, x, y):
        out = functional_call(model, dict(zip(names, pvals)), (x,))
        return loss_fn(out, y)

    per_row = vmap(grad(loss_of), in_dims=(None, 0, 0))
    try:
        pvals = tuple(t.detach() for t in sel.params)
        for i0 in range(0, rows, chunk):
            c = min(chunk, rows - i0)
            x, y = stream.take(c * m)
            if i0 == 0:
                _check_loss(model, loss_fn, x, y)
            dev = pvals[0].device
            x = x.to(dev).reshape(c, m, *x.shape[1:])
            y = y.to(dev).reshape(c, m, *y.shape[1:])
            with torch.no_grad():
                g = per_row(pvals, x, y)
            yield i0, dict(zip(names, g))
    finally:
        model.train(was_training)


def collect_gradients(model, loss_fn, data, n_samples: int, *, params=None,
                      dtype: str = "float32", batch_rows: int = 1, out=None,
                      chunk: int | None = None, max_chunk_bytes: int = 256 << 20,
                      stream=None, progress: bool = False) -> GradientStore:
    """Collect per-sample gradients into a column-major :class:`GradientStore`.

    Parameters
    ----------
    model : torch.nn.Module
    loss_fn : callable
        ``loss_fn(outputs, targets)`` returning a batch-mean scalar; applied per sample.
    data : iterable of (inputs, targets)
        Batches, e.g. a DataLoader; the first ``n_samples`` samples are used.
    n_samples : int
        Samples to use; the store has ``n = n_samples // batch_rows`` rows.
    params : None, list of str or PrunableParams
        Columns of A; default: conv and linear weights (see :func:`select_params`).
    dtype : {"float32", "bfloat16"}
        Storage dtype of A (gradients are computed in the model's dtype).
    batch_rows : int
        m samples per row: row = mean gradient of a mini-batch of m; A is scaled by
        ``sqrt(m / n)`` so that ``A^T A`` still estimates the per-sample Fisher.
    out : path, optional
        Memory-map the store to this ``.npy`` file instead of RAM.
    chunk : int, optional
        Rows per vmap call; default keeps a chunk's gradients under ``max_chunk_bytes``.
    stream : SampleStream, optional
        Draw samples from this stream (used by CHITA++ for fresh sub-samples).
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    GradientStore
        ``store.A`` is the (n, p) matrix for :func:`chita_ext.solve`; ``store.mean_grad``
        the mean gradient.
    """
    sel = resolve_params(model, params)
    if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples={n_samples!r} must be a positive int")
    if not isinstance(batch_rows, (int, np.integer)) or not 1 <= batch_rows <= n_samples:
        raise ValueError(f"batch_rows={batch_rows!r} must be an int in [1, n_samples={n_samples}]")
    size = data_size(data)
    if stream is None and size is not None and n_samples > size:
        raise ValueError(f"n_samples={n_samples} is larger than the data ({size} samples); "
                         f"pass n_samples <= {size}")
    rows = n_samples // batch_rows
    if chunk is None:
        chunk = int(max(1, min(rows, max_chunk_bytes // (4 * sel.p))))
    store = GradientStore(sel.p, rows, dtype, out)
    store.names, store.shapes = list(sel.names), [tuple(t.shape) for t in sel.params]
    store.batch_rows, store.n_samples = batch_rows, rows * batch_rows
    store.scale = math.sqrt(batch_rows / rows)
    total = torch.zeros(sel.p, dtype=torch.float64)
    bar = _bar(rows, progress, "gradients")
    for i0, g in per_sample_gradients(model, loss_fn, data, rows * batch_rows, params=sel,
                                      batch_rows=batch_rows, chunk=chunk, stream=stream):
        store.write_rows(i0, g, sel)
        total += torch.cat([g[n].reshape(g[n].shape[0], -1).double().sum(0) for n in sel.names])
        bar.update(next(iter(g.values())).shape[0])
    bar.close()
    store.mean_grad = (total / rows).numpy()
    store.flush()
    return store


def _bar(total, enabled, desc):
    if enabled:
        try:
            from tqdm.auto import tqdm
            return tqdm(total=total, desc=desc, unit="row", leave=False)
        except ImportError:  # pragma: no cover
            pass

    class _Null:
        def update(self, n):
            pass

        def close(self):
            pass
    return _Null()
