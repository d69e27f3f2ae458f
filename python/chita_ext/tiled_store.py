"""A gradient matrix larger than RAM: tiles of rows on disk, read back by panels of columns.

A memory-mapped store counts every page it touches in the process's RSS, and the (p, n)
column-major layout makes every chunk of rows touch every page. :class:`TiledStore`
writes with plain file I/O instead: gradients arrive a chunk of rows at a time and fill a
RAM *tile* of ``T`` rows, stored ``(p, T)`` (each weight's T values contiguous); a full tile
is written with one ``pwrite`` and dropped from the page cache. The file is the tiles one
after the other::

    offset(tile t, weight j) = (t * p + j) * T * itemsize

so a *panel* of columns ``[c0, c1)`` is one contiguous ``(c1 - c0) * T`` run in each tile:
``ceil(n / T)`` reads, assembled into a ``(c1 - c0, n)`` buffer (the column-major layout
of the in-RAM store). The last tile is padded with zero rows, which change no product of
the solvers (``panel`` returns ``n_pad`` rows). Resident memory is the tile while writing
and the panel buffers while reading, whatever the size of the file.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch

_NP_BITS = {"float32": np.float32, "bfloat16": np.uint16}  # bf16 stored as its bits
_TORCH = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _drop_cache(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to forget pages we will not read again (no-op where unsupported)."""
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


class TiledStore:
    """Column-major gradient matrix A (n x p) on disk, written by tiles of rows.

    Has the attributes of :class:`chita_ext.GradientStore` that a solver reads
    (``p``, ``n``, ``dtype``, ``scale``, ``batch_rows``, ``n_samples``, ``mean_grad``,
    ``names``, ``shapes``, ``methods``, ``chunk``) but no ``A``/``buffer`` view of the
    whole matrix: read it by panels (:meth:`panel`).

    Parameters
    ----------
    path : str or path
        File to create (an existing file is replaced, as numpy.memmap mode "w+" does).
    p, n : int
        Columns (weights) and rows.
    dtype : {"float32", "bfloat16"}
    tile_rows : int
        Rows per tile (T).
    """

    def __init__(self, path, p: int, n: int, dtype: str, tile_rows: int):
        if dtype not in _NP_BITS:
            raise ValueError(f"dtype={dtype!r}; pass 'float32' or 'bfloat16'")
        if tile_rows < 1:
            raise ValueError(f"tile_rows={tile_rows} must be >= 1")
        self.path, self.p, self.n, self.dtype = os.fspath(path), int(p), int(n), dtype
        self.tile_rows = int(min(tile_rows, n))
        self.tiles = math.ceil(self.n / self.tile_rows)
        self.n_pad = self.tiles * self.tile_rows
        self.itemsize = np.dtype(_NP_BITS[dtype]).itemsize
        self.scale, self.batch_rows, self.n_samples = 1.0, 1, self.n
        self.mean_grad = np.zeros(self.p)
        self.names, self.shapes, self.methods, self.chunk = [], [], {}, None
        self._energy = np.zeros(self.n_pad)
        self._written = 0  # tiles on disk
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        tile = np.zeros((self.p, self.tile_rows), dtype=_NP_BITS[dtype])
        self._tile_np = tile
        t = torch.from_numpy(tile)
        self.buffer = t if dtype == "float32" else t.view(torch.bfloat16)  # the RAM tile
        self._stage = None

    # ---------------------------------------------------------------- writing
    @property
    def tile_start(self) -> int:
        """First row of the tile being filled."""
        return self._written * self.tile_rows

    def flush_tile(self) -> None:
        """Write the RAM tile as the next tile of the file, then clear it."""
        if self._written >= self.tiles:
            raise RuntimeError("all tiles are written")
        off = self._written * self.p * self.tile_rows * self.itemsize
        view = memoryview(self._tile_np).cast("B")
        done = 0
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], off + done)
        os.fdatasync(self._fd)
        _drop_cache(self._fd, off, len(view))
        r0 = self.tile_start
        self._energy[r0:r0 + self.tile_rows] = _row_energies(self.buffer)
        self._written += 1
        self._tile_np.fill(0)

    @property
    def complete(self) -> bool:
        """All tiles written."""
        return self._written == self.tiles

    # ---------------------------------------------------------------- reading
    def panel(self, c0: int, c1: int, out=None) -> torch.Tensor:
        """Columns ``[c0, c1)`` as a ``(c1 - c0, n_pad)`` tensor of the store dtype.

        One read per tile. ``out`` (a tensor from an earlier call, at least as large) is
        reused so that reading a whole store keeps a fixed resident size.
        """
        if not self.complete:
            raise RuntimeError(f"{self._written} of {self.tiles} tiles written; finish the store")
        if not 0 <= c0 < c1 <= self.p:
            raise ValueError(f"panel [{c0}, {c1}) is outside [0, p={self.p})")
        W, T = c1 - c0, self.tile_rows
        npdt = _NP_BITS[self.dtype]
        need = self.tiles * W * T
        if self._stage is None or self._stage.size < need:
            self._stage = np.empty(need, dtype=npdt)
        stage = self._stage[:need].reshape(self.tiles, W, T)
        for t in range(self.tiles):
            off = (t * self.p + c0) * T * self.itemsize
            view = memoryview(stage[t]).cast("B")
            got = 0
            while got < len(view):
                k = os.preadv(self._fd, [view[got:]], off + got)
                if k == 0:
                    raise RuntimeError(f"{self.path} is shorter than expected (truncated?)")
                got += k
            _drop_cache(self._fd, off, len(view))
        if out is None or out.numel() < W * self.n_pad:
            out = torch.empty(W * self.n_pad, dtype=_TORCH[self.dtype])
        res = out.reshape(-1)[:W * self.n_pad].view(W, self.tiles, T)
        src = torch.from_numpy(stage)
        if self.dtype == "bfloat16":
            src = src.view(torch.bfloat16)
        res.copy_(src.permute(1, 0, 2))
        return res.view(W, self.n_pad)

    # ---------------------------------------------------------------- statistics
    def row_energies(self) -> torch.Tensor:
        """``||a_i||^2`` of every row (float64, length n), accumulated while writing."""
        return torch.from_numpy(self._energy[:self.n].copy())

    def fro_norm_sq(self) -> float:
        """``||A||_F^2``, accumulated while writing."""
        return float(self._energy.sum())

    @property
    def nbytes(self) -> int:
        """Bytes of the file."""
        return self.n_pad * self.p * self.itemsize

    def close(self, remove: bool = True) -> None:
        """Close the file (and delete it unless ``remove=False``)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if remove:
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass

    def __del__(self):  # a store dropped without close() still frees its file
        try:
            self.close(remove=True)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def _row_energies(tile: torch.Tensor, block: int = 1 << 16) -> np.ndarray:
    """Per-row (column of the tile) sum of squares of a ``(p, T)`` tile, float64."""
    out = torch.zeros(tile.shape[1], dtype=torch.float64)
    for a in range(0, tile.shape[0], block):
        out += tile[a:a + block].double().square().sum(0)
    return out.numpy()
