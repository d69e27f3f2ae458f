"""The block approximation over a whole gradient store: one global budget, two passes.

Blocks are runs of ``block_size`` weights inside each layer (the last piece of a layer
shorter). For a window of lam values:

1. **Score pass** (each block's columns read once): the block's Gram, its greedy path
   at the window's centre lam (:func:`block_paths.greedy_paths`), and the exact gains of
   that path at every lam of the window (:func:`block_paths.window_gains`).
2. **Allocation** (no data): per lam, one global budget k shared by the largest marginal
   decreases of all paths (:func:`block_paths.allocate`).
3. **Solve pass** (each block's columns read once more): every block's exact ridge
   solution on its share of the path, for every lam, and the residual ``A (w - w_bar)``
   summed over blocks, so the *full* objective (not only the block-diagonal one) of each
   lam's solution and of magnitude pruning is known exactly at the end.

Nothing is iterated to a tolerance: a path stops at its cap (the larger of twice the
block's share of the budget and what magnitude pruning keeps in it, plus 16, at most the
block); blocks whose whole path was taken
(``saturated``) are counted and reported, so a cap that binds is visible.

Blocks are processed in batches (one batched matrix product per batch) by ``threads``
worker threads, each running torch single-threaded: on a shared machine one small op
waiting for a second busy core costs milliseconds. Panels of a disk store are read by a
separate thread while the previous panel is processed.
"""
from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from . import block_paths as bp
from .result import SolveResult

BLOCK_SIZE = 500            # weights per block (the paper's ResNet50 / MobileNetV1 setting)
WORKER_BYTES = 384 << 20    # working set of one worker's batch of blocks
PANEL_BYTES = 256 << 20     # columns read from the store at a time


def cut_blocks(sizes, block_size: int = BLOCK_SIZE):
    """Start and length of every block: each layer cut into pieces of ``block_size``."""
    if block_size < 1:
        raise ValueError(f"block_size={block_size} must be >= 1")
    starts, lens, off = [], [], 0
    for s in sizes:
        for a in range(0, int(s), block_size):
            starts.append(off + a)
            lens.append(min(block_size, int(s) - a))
        off += int(s)
    return np.asarray(starts, dtype=np.int64), np.asarray(lens, dtype=np.int64)


class RamColumns:
    """Panels of an in-RAM (or memory-mapped) ``(p, n)`` buffer: views, no copies."""

    def __init__(self, buffer: torch.Tensor):
        self.buffer, self.p, self.n = buffer, buffer.shape[0], buffer.shape[1]
        self.itemsize = buffer.element_size()
        self.copies = False

    def panel(self, c0, c1, out=None):
        return self.buffer[c0:c1]


class StoreColumns:
    """Panels of a :class:`TiledStore` (read from disk into reused buffers)."""

    def __init__(self, store):
        self.store, self.p, self.n = store, store.p, store.n_pad
        self.itemsize = store.itemsize
        self.copies = True

    def panel(self, c0, c1, out=None):
        return self.store.panel(c0, c1, out=out)


def columns_of(store):
    """The panel reader of a GradientStore (RAM/memmap) or a TiledStore."""
    if hasattr(store, "panel"):
        return StoreColumns(store)
    return RamColumns(store.buffer)


@contextlib.contextmanager
def _torch_threads(n: int):
    prev = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


class BlockSolver:
    """Block-diagonal CHITA over a column source, for windows of lam values.

    Parameters
    ----------
    source : RamColumns or StoreColumns
        Where the columns come from (:func:`columns_of`).
    w_bar : numpy.ndarray, (p,)
    k : int
        Global budget: weights kept over all blocks.
    sizes : sequence of int
        Sizes of the layers (blocks never cross a layer boundary).
    block_size : int
    alpha : numpy.ndarray, (p,), optional
        Linear term.
    threads : int
        Worker threads (blocks in parallel).
    panel_bytes, worker_bytes : int
        Bytes of a panel read from the source, and of one worker's batch.
    col_scale : float, optional
        The mean squared norm of a column of A (``||A||_F^2 / p``). The blocks are solved
        on ``A / sqrt(col_scale)`` (lam and alpha rescaled to match, objectives scaled
        back): the same solutions, but float32 Gram products of O(1), never of
        denormal-sized gradients (a network whose gradients are ~1e-19 per entry would
        otherwise square them below float32's smallest normal number).
    progress : bool
    """

    def __init__(self, source, w_bar, k: int, sizes, *, block_size: int = BLOCK_SIZE,
                 alpha=None, threads: int = 1, panel_bytes: int = PANEL_BYTES,
                 worker_bytes: int = WORKER_BYTES, col_scale=None, progress: bool = False):
        self.source, self.p, self.n = source, int(source.p), int(source.n)
        if int(sum(sizes)) != self.p:
            raise ValueError(f"layer sizes sum to {int(sum(sizes))}, not p={self.p}")
        if not 1 <= k <= self.p:
            raise ValueError(f"k={k} must be in [1, p={self.p}]")
        self.k, self.B = int(k), int(min(block_size, max(sizes)))
        self.starts, self.lens = cut_blocks(sizes, self.B)
        self.w = torch.from_numpy(np.asarray(w_bar, dtype=np.float64))
        if col_scale is not None and not col_scale > 0:
            raise ValueError(f"col_scale={col_scale} must be > 0 (||A||_F^2 / p)")
        # work on c A: lam -> c^2 lam, alpha -> c^2 alpha, objective -> c^2 objective
        self.c2 = 1.0 if col_scale is None else 1.0 / float(col_scale)
        self.c = float(np.sqrt(self.c2))
        self.alpha = None if alpha is None else \
            torch.from_numpy(np.asarray(alpha, np.float64) * self.c2)
        # magnitude pruning's support: the reference every objective is compared with,
        # and each block's path reaches past what it keeps there
        top = torch.topk(self.w.abs(), self.k, sorted=False).indices
        self.mp_keep = torch.zeros(self.p, dtype=torch.bool)
        self.mp_keep[top] = True
        mp_kept = np.add.reduceat(self.mp_keep.numpy().astype(np.int64), self.starts)
        share = self.k / self.p
        self.caps = torch.tensor([bp.path_cap(int(s), share, int(m))
                                  for s, m in zip(self.lens, mp_kept)])
        self.T = int(self.caps.max())
        self.threads = max(1, int(threads))
        per_block = self.B * self.n * 4 * 2 + self.B * self.B * 4 + 2 * self.T * self.B * 4
        self.nb = int(max(1, min(256, worker_bytes // per_block)))
        self.panels = self._cut_panels(panel_bytes)
        self.progress = progress
        self.passes, self.pass_seconds = 0, []
        self.order = None

    # ------------------------------------------------------------ layout
    def _cut_panels(self, panel_bytes):
        """Runs of whole blocks of about ``panel_bytes`` of the source each."""
        col_bytes = self.n * self.source.itemsize
        per = max(1, panel_bytes // max(1, col_bytes))
        panels, b0 = [], 0
        nblocks = len(self.starts)
        while b0 < nblocks:
            b1, cols = b0, 0
            while b1 < nblocks and (b1 == b0 or cols + self.lens[b1] <= per):
                cols += int(self.lens[b1])
                b1 += 1
            panels.append((b0, b1))
            b0 = b1
        return panels

    def _batches(self, b0, b1):
        return [(a, min(a + self.nb, b1)) for a in range(b0, b1, self.nb)]

    def _gather(self, panel, c0, a, b):
        """Blocks a..b-1 of a panel (first column c0): X (nb, B, n) float32, w, alpha, valid."""
        lens = self.lens[a:b]
        nb, B = b - a, self.B
        s0 = int(self.starts[a]) - c0
        if np.all(lens == B):
            X = panel[s0:s0 + nb * B].view(nb, B, panel.shape[1])
            X = X if X.dtype == torch.float32 else X.float()
        else:
            X = torch.zeros((nb, B, panel.shape[1]), dtype=torch.float32)
            for i in range(nb):
                s = int(self.starts[a + i]) - c0
                X[i, :lens[i]] = panel[s:s + lens[i]]
        if self.c != 1.0:
            X = X * self.c  # a new float32 batch: the panel itself is never changed
        pos = torch.from_numpy(self.starts[a:b]).unsqueeze(1) + torch.arange(B).unsqueeze(0)
        valid = torch.arange(B).unsqueeze(0) < torch.from_numpy(lens).unsqueeze(1)
        pos = torch.where(valid, pos, 0)
        w = self.w[pos] * valid
        alpha = None if self.alpha is None else self.alpha[pos] * valid
        return X, w, alpha, valid, pos

    # ------------------------------------------------------------ passes
    def _run_pass(self, desc, work):
        """Call ``work(X, w, alpha, valid, pos, a, b)`` for every batch, in parallel;
        returns the list of its results."""
        from .progress import phase
        t0 = time.perf_counter()
        bar = phase(len(self.starts), desc, unit="block", enabled=self.progress)
        results = []
        bufs = [None, None]
        with _torch_threads(1), ThreadPoolExecutor(self.threads) as pool, \
                ThreadPoolExecutor(1) as reader:
            def read(i):
                b0, b1 = self.panels[i]
                c0 = int(self.starts[b0])
                c1 = int(self.starts[b1 - 1] + self.lens[b1 - 1])
                bufs[i % 2] = self.source.panel(c0, c1, out=bufs[i % 2])
                return bufs[i % 2], c0

            nxt = reader.submit(read, 0)
            for i, (b0, b1) in enumerate(self.panels):
                panel, c0 = nxt.result()
                if i + 1 < len(self.panels):
                    nxt = reader.submit(read, i + 1)

                def job(a, b, panel=panel, c0=c0):
                    return work(*self._gather(panel, c0, a, b), a, b)
                futs = [pool.submit(job, a, b) for a, b in self._batches(b0, b1)]
                for f in futs:
                    results.append(f.result())
                bar.update(b1 - b0)
        bar.close()
        self.passes += 1
        self.pass_seconds.append(time.perf_counter() - t0)
        return results

    def _score(self, lams, centre):
        """Pass 1: the path order at ``centre`` and every lam's gains along it."""
        nblocks = len(self.starts)
        order = torch.full((nblocks, self.T), -1, dtype=torch.int32)
        gains = {lam: torch.full((nblocks, self.T), -np.inf, dtype=torch.float64) for lam in lams}

        def work(X, w, alpha, valid, pos, a, b):
            G = bp.gram(X)
            caps = self.caps[a:b]
            o, g = bp.greedy_paths(G, w, valid, centre, caps, alpha=alpha)
            T = o.shape[1]
            order[a:b, :T] = o.to(torch.int32)
            others = [lam for lam in lams if lam != centre]
            for lam, gl in zip(others, bp.window_gains(G, w, o, others, alpha)):
                gains[lam][a:b, :T] = gl
            if centre in gains:
                gains[centre][a:b, :T] = g
        self._run_pass("block scores", work)
        return order, gains

    def _solve(self, lams, kbs):
        """Pass 2: block solutions for every lam on its allocation, and the residuals."""
        out = {lam: {"w": torch.zeros(self.p, dtype=torch.float32),
                     "keep": torch.zeros(self.p, dtype=torch.bool)} for lam in lams}
        order = self.order

        def work(X, w, alpha, valid, pos, a, b):
            Xw = bp.block_product(X, w)
            res = {}
            for lam in lams:
                kb = kbs[lam][a:b]
                m = int(kb.max()) if len(kb) else 0
                o = order[a:b, :m].long()
                S = torch.where(torch.arange(m).unsqueeze(0) < kb.unsqueeze(1), o, -1)
                vals, Ad = bp.solve_supports(X, w, Xw, S, lam, alpha)
                on = S >= 0
                gi = torch.gather(pos, 1, S.clamp_min(0))[on]
                out[lam]["w"][gi] = vals[on].float()
                out[lam]["keep"][gi] = True
                wn = torch.zeros_like(w)
                wn[torch.arange(b - a).unsqueeze(1).expand_as(S)[on], S[on]] = vals[on]
                d = (wn - w) * valid
                res[lam] = (Ad.sum(0), float((Ad * Ad).sum()), float((d * d).sum()),
                            0.0 if alpha is None else float((alpha * wn).sum()))
            keep = self.mp_keep[pos] & valid
            Ad_mp = -bp.block_product(X, w * ~keep)
            d_mp = w * ~keep * valid
            res["mp"] = (Ad_mp.sum(0), float((Ad_mp * Ad_mp).sum()), float((d_mp * d_mp).sum()),
                         0.0 if alpha is None else float((alpha * w * keep).sum()))
            return res
        parts = self._run_pass("block solves", work)
        sums = {}
        for key in list(lams) + ["mp"]:
            R = sum(p_[key][0] for p_ in parts)
            sums[key] = (R, sum(p_[key][1] for p_ in parts), sum(p_[key][2] for p_ in parts),
                         sum(p_[key][3] for p_ in parts))
        return out, sums

    # ------------------------------------------------------------ public
    def solve_window(self, lams, centre=None):
        """Solve the block problem for every lam of ``lams`` (two passes over the columns).

        Parameters
        ----------
        lams : sequence of float
            Absolute lam values (> 0).
        centre : float, optional
            The lam whose greedy path orders every block (default: the middle of ``lams``).

        Returns
        -------
        list of SolveResult
            One per lam, in order: ``w`` (the block solution), ``objective`` (the FULL
            objective ``1/2||A (w - w_bar)||^2 + lam/2||w - w_bar||^2 + alpha^T w``) and in
            ``info``: ``mp_objective`` (magnitude pruning's full objective at the same
            lam), ``block_objective`` (the block-diagonal objective), ``blocks``,
            ``block_size``, ``saturated`` (blocks whose whole path was kept), ``passes``.
        """
        lams = [float(v) for v in lams]
        if not lams or min(lams) <= 0:
            raise ValueError(f"lams={lams} must be positive")
        centre = float(centre) if centre is not None else sorted(lams)[len(lams) // 2]
        if centre not in lams:
            lams = lams + [centre]
        user_lams, c2 = lams, self.c2
        lams, centre_user, centre = [v * c2 for v in lams], centre, centre * c2
        t0 = time.perf_counter()
        self.order, gains = self._score(lams, centre)
        kbs = {lam: bp.allocate(gains[lam], self.k) for lam in lams}
        sols, sums = self._solve(lams, kbs)
        seconds = time.perf_counter() - t0
        R_mp, _, dd_mp, aw_mp = sums["mp"]
        results = []
        for lam, lam_user in zip(lams, user_lams):
            R, ad2, dd, aw = sums[lam]
            kb = kbs[lam]
            sat = int(((kb == self.caps) & (self.caps < torch.from_numpy(self.lens))).sum())
            f = (0.5 * float((R * R).sum()) + 0.5 * lam * dd + aw) / c2
            f_mp = (0.5 * float((R_mp * R_mp).sum()) + 0.5 * lam * dd_mp + aw_mp) / c2
            w = sols[lam]["w"].numpy()
            results.append(SolveResult(
                w=w, support=np.flatnonzero(sols[lam]["keep"].numpy()), objective=f,
                history=np.array([f]), iterations=0, seconds=seconds, method="block",
                converged=True,
                info={"lam": lam_user, "mp_objective": f_mp,
                      "block_objective": (0.5 * ad2 + 0.5 * lam * dd + aw) / c2,
                      "blocks": len(self.starts), "block_size": self.B, "path_cap": self.T,
                      "saturated": sat, "kept": int(kb.sum()), "passes": self.passes,
                      "centre_lam": centre_user}))
        return results
