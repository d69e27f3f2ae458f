"""Per-sample gradients written straight into a column-major store.

The store holds ``A = G * scale`` as a C-contiguous ``(p, n)`` buffer: row j is the n
gradient values of weight j ("gradient columns"), and its transpose is the ``(n, p)``
column-major matrix :func:`chita_ext.solve` streams. Gradients are computed a chunk of rows
at a time, by one batched forward + backward with hooks on linear and conv layers
(:mod:`chita_ext.persample`) and ``torch.func.vmap(grad)`` for any other parameter, so
peak extra memory is one chunk's activations and scratch on top of the store itself.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch
from .params import PrunableParams, resolve_params
from .persample import DictSink, PerSampleEngine
from .progress import phase

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

    def peek(self, n: int):
        """Return the next (up to) n samples without consuming them."""
        x, y = self.take(n)
        self.drawn -= x.shape[0]
        self._buf = (x, y) if self._buf is None else (torch.cat([x, self._buf[0]]),
                                                      torch.cat([y, self._buf[1]]))
        return x, y

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
        self._energies = None  # row_energies(), cached
        self.names, self.shapes = [], []
        npdt = np.float32 if dtype == "float32" else np.uint16  # bf16 bits
        if out is None:
            # numpy asks for transparent huge pages on large arrays: first touch of the
            # store is then several times faster than with torch.empty's 4 KiB pages
            self._mm = None
            t = torch.from_numpy(np.empty((self.p, self.n), dtype=npdt))
        else:
            self.path = os.fspath(out)
            self._mm = np.lib.format.open_memmap(self.path, mode="w+", dtype=npdt,
                                                 shape=(self.p, self.n))
            t = torch.from_numpy(self._mm)
        self.buffer = t if dtype == "float32" else t.view(torch.bfloat16)
        self.methods, self.chunk = {}, None

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
        """Write a chunk of gradient rows (``{name: (c, *shape)}``) as columns i0..i0+c.

        The rows are multiplied by ``scale`` on the way in.
        """
        for name, a, b in zip(sel.names, sel.offsets[:-1], sel.offsets[1:]):
            g = rows[name]
            c = g.shape[0]
            self.buffer[a:b, i0:i0 + c].copy_(g.reshape(c, b - a).T * self.scale)
        self._energies = None

    def row_energies(self, block: int = 1 << 14) -> torch.Tensor:
        """``||a_i||^2`` of every row i of A (float64, length n), in one pass over the store.

        Each block of weights is summed in float32 (at most ``block`` terms per entry) and
        the blocks are added in float64; the result is cached until the store is written.
        """
        if self._energies is None:
            out = torch.zeros(self.n, dtype=torch.float64)
            for a in range(0, self.p, block):
                blk = self.buffer[a:a + block].float()
                out += torch.linalg.vector_norm(blk, dim=0).double().square()
            self._energies = out
        return self._energies

    def fro_norm_sq(self) -> float:
        """||A||_F^2 (the sum of :meth:`row_energies`)."""
        return float(self.row_energies().sum())

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


class _StoreSink:
    """Receives a chunk's row gradients (already scaled) and writes them into the store.

    Also accumulates each weight's sum over rows in float64 (for ``mean_grad``), from the
    full-precision gradients, before any bfloat16 rounding.
    """

    def __init__(self, store: GradientStore, sel: PrunableParams):
        self.buf, self.offsets = store.buffer, sel.offsets
        self.total = torch.zeros(sel.p, dtype=torch.float64)
        self.i0, self.c = 0, 0

    def start(self, i0: int, c: int) -> None:
        self.i0, self.c = i0, c

    def _dst(self, i):
        return self.buf[self.offsets[i]:self.offsets[i + 1], self.i0:self.i0 + self.c]

    def _add(self, i, s):
        self.total[self.offsets[i]:self.offsets[i + 1]] += s.reshape(-1).to(self.total.device)

    def rows(self, i, G):
        # one transposing copy (with the cast to the store dtype) per tensor, no temporary
        self._dst(i).copy_(G.T)
        self._add(i, G.sum(0))

    def outer(self, i, g, a):
        # row r of a linear layer with one position: g_r a_r^T, written in the store layout
        gt, at = g.T.contiguous(), a.T.contiguous()
        dst = self._dst(i).view(g.shape[1], a.shape[1], self.c)
        torch.mul(gt[:, None, :], at[None, :, :], out=dst)
        self._add(i, gt @ at.T)

    def zeros(self, i, c, like):
        self._dst(i).zero_()


def _engine(model, loss_fn, sel, method, stream, n_samples):
    """A PerSampleEngine probed on the first samples of ``stream`` (not consumed)."""
    engine = PerSampleEngine(model, loss_fn, sel, method)
    x, y = stream.peek(min(2, n_samples))
    dev = sel.params[0].device
    _check_loss(model, loss_fn, x.to(dev), y.to(dev))
    if not engine.probed:
        engine.probe(x.to(dev), y.to(dev))
    return engine


def _chunks(engine, stream, rows, m, chunk, sink, scale):
    """Draw c m samples per chunk, run the engine into ``sink``; yields (i0, c)."""
    dev = engine.sel.params[0].device
    for i0 in range(0, rows, chunk):
        c = min(chunk, rows - i0)
        x, y = stream.take(c * m)
        sink.start(i0, c)
        engine.run(x.to(dev), y.to(dev), c, m, sink, scale)
        yield i0, c


def per_sample_gradients(model, loss_fn, data, n_samples: int, *, params=None,
                         batch_rows: int = 1, chunk: int = 64, stream=None,
                         method: str = "auto"):
    """Yield ``(i0, {name: (c, *shape)})`` chunks of per-row gradients, in model dtype.

    Row i is the gradient of ``loss_fn`` on samples ``i*m .. i*m+m-1`` (m = batch_rows)
    at the current weights, BatchNorm in eval mode. ``method`` as in
    :func:`collect_gradients`.
    """
    sel = resolve_params(model, params)
    stream = stream if stream is not None else SampleStream(data, cycle=False)
    rows, m = n_samples // batch_rows, batch_rows
    was_training = model.training
    model.eval()
    try:
        engine = _engine(model, loss_fn, sel, method, stream, rows * m)
        sink = DictSink(sel)
        for i0, _ in _chunks(engine, stream, rows, m, chunk, sink, 1.0):
            yield i0, {sel.names[i]: g for i, g in sorted(sink.out.items())}
    finally:
        model.train(was_training)


def collect_gradients(model, loss_fn, data, n_samples: int, *, params=None,
                      dtype: str = "float32", batch_rows: int = 1, out=None,
                      chunk: int | None = None, max_chunk_bytes: int = 512 << 20,
                      stream=None, progress: bool = False,
                      method: str = "auto") -> GradientStore:
    """Collect per-sample gradients into a column-major :class:`GradientStore`.

    Parameters
    ----------
    model : torch.nn.Module
    loss_fn : callable
        ``loss_fn(outputs, targets)`` returning a scalar (a batch mean such as
        ``torch.nn.CrossEntropyLoss()``); a row's loss is ``loss_fn`` on its samples.
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
        Rows per forward/backward; default: as many as keep one chunk's activations and
        scratch (hooks) or per-row gradients (vmap) under ``max_chunk_bytes``.
    max_chunk_bytes : int
        Memory budget of one chunk, on top of the store.
    stream : SampleStream, optional
        Draw samples from this stream (used by CHITA++ for fresh sub-samples).
    progress : bool
        Show progress (a tqdm bar on a terminal, one line when the pass ends otherwise).
    method : {"auto", "hooks", "vmap"}
        ``"hooks"``: one batched forward + backward per chunk with hooks on Linear and
        Conv1d/2d/3d layers (near backward-pass speed); ``"vmap"``: ``torch.func``
        ``vmap(grad)`` of the whole model per row (any layer type, much slower);
        ``"auto"`` (default): hooks for every parameter they serve and vmap for the
        others (other layer types, weight sharing). ``store.methods`` tells which ran.

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
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}; pass 'float32' or 'bfloat16'")
    size = data_size(data)
    if stream is None and size is not None and n_samples > size:
        raise ValueError(f"n_samples={n_samples} is larger than the data ({size} samples); "
                         f"pass n_samples <= {size}")
    rows, m = n_samples // batch_rows, int(batch_rows)
    stream = stream if stream is not None else SampleStream(data, cycle=False)
    was_training = model.training
    model.eval()
    try:
        engine = _engine(model, loss_fn, sel, method, stream, rows * m)
        if chunk is None:
            chunk = engine.chunk_rows(max_chunk_bytes, m, rows)
        store = GradientStore(sel.p, rows, dtype, out)
        store.names, store.shapes = list(sel.names), [tuple(t.shape) for t in sel.params]
        store.batch_rows, store.n_samples = m, rows * m
        store.scale, store.chunk = math.sqrt(m / rows), int(chunk)
        fb = set(engine.fallback)
        store.methods = {nm: ("vmap" if i in fb else "hooks") for i, nm in enumerate(sel.names)}
        sink = _StoreSink(store, sel)
        bar = _bar(rows, progress, "gradients")
        # the scale rides on the output gradients (hooks) or the rows (vmap): no extra pass
        for _, c in _chunks(engine, stream, rows, m, chunk, sink, store.scale):
            bar.update(c)
        bar.close()
    finally:
        model.train(was_training)
    store.mean_grad = (sink.total / (store.scale * rows)).numpy()
    store._energies = None  # written: any cached row energies are stale
    store.flush()
    return store


def _bar(total, enabled, desc):
    """The gradient pass's progress (a tqdm bar on a terminal, one line otherwise)."""
    return phase(total, desc, unit="row", enabled=enabled)
