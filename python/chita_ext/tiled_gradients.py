"""Per-sample gradients straight into a :class:`TiledStore` (a store larger than RAM).

The same engine as :func:`chita_ext.collect_gradients` (hooks on linear and conv layers,
``vmap(grad)`` for the rest), the same scaling (``sqrt(m / n)`` for m samples per row) and
the same ``mean_grad``; only the destination differs: each chunk of rows goes into the RAM
tile, and a full tile is written to the file.
"""
from __future__ import annotations

import math

import torch

from .gradients import SampleStream, _bar, _engine, _StoreSink
from .params import resolve_params
from .tiled_store import TiledStore


def tile_rows_for(chunk: int, p: int, itemsize: int, tile_bytes: int, rows: int) -> int:
    """Rows per tile: a multiple of the chunk, as many as keep the tile under
    ``tile_bytes`` (at least one chunk), at most the rows of the store."""
    per = max(1, tile_bytes // max(1, chunk * p * itemsize))
    return int(min(rows, chunk * per))


def collect_tiled(model, loss_fn, data, n_samples: int, path, *, params=None,
                  dtype: str = "bfloat16", batch_rows: int = 1, chunk=None,
                  max_chunk_bytes: int = 512 << 20, tile_bytes: int = 256 << 20,
                  stream=None, progress: bool = False, method: str = "auto") -> TiledStore:
    """Collect per-sample gradients into a disk-backed :class:`TiledStore` at ``path``.

    Parameters are those of :func:`chita_ext.collect_gradients` (``out`` is ``path``),
    plus ``tile_bytes``: the RAM tile's budget (rows per tile: a multiple of the chunk).
    """
    sel = resolve_params(model, params)
    if not isinstance(batch_rows, int) or not 1 <= batch_rows <= n_samples:
        raise ValueError(f"batch_rows={batch_rows!r} must be an int in [1, n_samples={n_samples}]")
    rows, m = n_samples // batch_rows, int(batch_rows)
    stream = stream if stream is not None else SampleStream(data, cycle=False)
    itemsize = 4 if dtype == "float32" else 2
    was_training = model.training
    model.eval()
    store = None
    try:
        engine = _engine(model, loss_fn, sel, method, stream, rows * m)
        if chunk is None:
            chunk = engine.chunk_rows(max_chunk_bytes, m, rows)
        T = tile_rows_for(chunk, sel.p, itemsize, tile_bytes, rows)
        store = TiledStore(path, sel.p, rows, dtype, T)
        store.names, store.shapes = list(sel.names), [tuple(t.shape) for t in sel.params]
        store.batch_rows, store.n_samples = m, rows * m
        store.scale, store.chunk = math.sqrt(m / rows), int(chunk)
        fb = set(engine.fallback)
        store.methods = {nm: ("vmap" if i in fb else "hooks") for i, nm in enumerate(sel.names)}
        sink = _StoreSink(store, sel)  # writes into store.buffer, the RAM tile
        dev = sel.params[0].device
        bar = _bar(rows, progress, "gradients")
        i0 = 0
        while i0 < rows:
            c = min(chunk, rows - i0, store.tile_start + T - i0)
            x, y = stream.take(c * m)
            sink.start(i0 - store.tile_start, c)
            engine.run(x.to(dev), y.to(dev), c, m, sink, store.scale)
            i0 += c
            if i0 == store.tile_start + T or i0 == rows:
                store.flush_tile()
            bar.update(c)
        bar.close()
        store.mean_grad = (sink.total / (store.scale * rows)).numpy()
    except BaseException:
        if store is not None:
            store.close(remove=True)  # nothing left half-written
        raise
    finally:
        model.train(was_training)
    return store
