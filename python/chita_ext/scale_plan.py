"""Planning a prune() for the machine it runs on: where A lives, in what dtype, which solver.

:func:`plan_scale` turns (p, rows, samples per row) and the memory and disk available into
a :class:`ScalePlan`:

- **defaults of the paper at scale**: from ``SCALE_MIN_P`` prunable weights on, unset
  ``n_samples`` / ``batch_rows`` become 500 rows of 16 samples (8000 samples);
- **store dtype**: float32 when the float32 store plus the working set fits the RAM
  budget (``RAM_SHARE`` of the memory available), else bfloat16;
- **RAM or disk**: the store in RAM when it fits the budget, else a :class:`TiledStore`
  on disk (file I/O by tiles of rows, RSS bounded by a tile / a few panels);
- **chunk of the gradient pass**: the activation budget handed to the per-sample engine;
- **block approximation**: from ``BLOCK_MIN_P`` weights on, or whenever the store is on
  disk (the exact solver needs A in RAM).

Peak RSS (bytes) is then bounded as (each phase measured against it with
``CHITA_TRACE_RSS=1``, see :mod:`chita_ext.rss_trace`; :meth:`ScalePlan.memory` and
docs/pruning.md, "Large models")::

    peak = base + max(store_ram + 8 p + max(gradients, solve, evaluation), guard)
    gradients  = 1.5 x chunk (activations, scratch, output gradients) + tile + 8 p
    solve      = panels + threads * batch + lam window + held candidates + paths + 24 p
    evaluation = evaluation forwards (eval_batch samples, inside the chunk) + 8 p
    guard      = a chunk of fresh samples + evaluation forwards + 12 p

with ``base`` the process before the first stage (torch, model, held-out samples).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field

from .rss_trace import status_bytes

SCALE_MIN_P = 2_000_000   # from here on: the paper's rows, the planner's choices matter
BLOCK_MIN_P = 2_000_000   # the block approximation by default from here on
PAPER_ROWS, PAPER_BATCH_ROWS = 500, 16
SMALL_SAMPLES = 1000      # n_samples default below SCALE_MIN_P (one sample per row)
RAM_SHARE = 0.6           # of the memory available that a plan may use
CHUNK_SHARE, CHUNK_MIN, CHUNK_MAX = 0.25, 512 << 20, 4 << 30
TILE_BYTES = 256 << 20    # RAM tile of a disk store
DISK_MARGIN = 1 << 30     # free disk left after the store file
EVAL_BATCH = 256          # samples per forward of the held-out evaluations, at most
GiB = float(1 << 30)


def _read_int(path):
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return None if text in ("", "max") else int(text)


def _cgroup_room():
    """Bytes the process's memory cgroup still allows (v2 or v1), or None."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, ctrl, path = line.split(":", 2)
        if ctrl == "":  # v2
            base = "/sys/fs/cgroup" + path
            lim, use = _read_int(base + "/memory.max"), _read_int(base + "/memory.current")
        elif "memory" in ctrl.split(","):
            base = "/sys/fs/cgroup/memory" + path
            lim = _read_int(base + "/memory.limit_in_bytes")
            use = _read_int(base + "/memory.usage_in_bytes")
        else:
            continue
        if lim is not None and use is not None and lim < (1 << 60):
            return max(0, lim - use)
    return None


def memory_available() -> int:
    """Bytes of memory this process can still take: ``MemAvailable`` of /proc/meminfo,
    lowered to the room left in its memory cgroup (``memory.max`` - ``memory.current``)."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    room = _cgroup_room()
    vals = [v for v in (avail, room) if v is not None]
    return min(vals) if vals else 8 << 30


def current_rss() -> int:
    """Resident set size of this process now (VmRSS), bytes."""
    return status_bytes("VmRSS")


def disk_free(path) -> int:
    """Free bytes on the file system holding ``path`` (a file to create or a directory)."""
    path = os.fspath(path)
    d = path if os.path.isdir(path) else (os.path.dirname(os.path.abspath(path)) or ".")
    return shutil.disk_usage(d).free


def default_samples(p: int, n_samples=None, batch_rows=None):
    """``(n_samples, batch_rows)`` with the defaults filled in.

    Below ``SCALE_MIN_P``: 1000 samples, one per row. From it on (the paper's setting for
    MobileNetV1 / ResNet50): 500 rows of 16 samples; a given ``batch_rows`` m gives 500 m
    samples; a given ``n_samples`` N gives ``clamp(N // 500, 1, 16)`` samples per row.
    """
    if p < SCALE_MIN_P:
        return (SMALL_SAMPLES if n_samples is None else n_samples,
                1 if batch_rows is None else batch_rows)
    if n_samples is None and batch_rows is None:
        return PAPER_ROWS * PAPER_BATCH_ROWS, PAPER_BATCH_ROWS
    if n_samples is None:
        return PAPER_ROWS * batch_rows, batch_rows
    if batch_rows is None:
        return n_samples, int(min(PAPER_BATCH_ROWS, max(1, n_samples // PAPER_ROWS)))
    return n_samples, batch_rows


OPTIONS = ("ram_budget", "store", "block", "block_size", "scratch", "chunk_bytes",
           "panel_bytes", "tile_bytes")


@dataclass
class ScalePlan:
    """What :func:`plan_scale` chose, and why (``reasons``). Byte counts are estimates
    from the documented formula; ``memory()`` gives the parts."""

    p: int
    k: int
    n_samples: int
    batch_rows: int
    rows: int
    dtype: str
    store: str               # "ram" or "disk"
    path: object             # disk store file (None: a temporary file per stage)
    scratch: str             # directory of temporary disk stores
    block: bool
    block_size: int
    chunk_bytes: int
    tile_bytes: int
    panel_bytes: int
    threads: int
    chunk_mem: int           # bytes of the chunk the gradient pass will hold
    available: int           # memory available when planned
    budget: int
    disk_free: int
    base_rss: int
    active: bool             # prune() takes the planned path (large p, disk, blocks)
    eval_batch: int = EVAL_BATCH  # samples per forward of evaluations (inside the chunk)
    eval_mem: int = 0        # bytes those forwards may hold (eval_batch x one sample's row)
    sample_bytes: int = 0    # bytes of one training sample (inputs and target)
    guard: bool = True       # the final guard runs (its chunk of fresh samples counts)
    reasons: list = field(default_factory=list)

    @property
    def itemsize(self) -> int:
        return 4 if self.dtype == "float32" else 2

    @property
    def store_bytes(self) -> int:
        """Bytes of A (rows x p x itemsize)."""
        return self.rows * self.p * self.itemsize

    def memory(self, dtype=None, store=None) -> dict:
        """The parts of the peak-RSS formula, bytes (for this plan, or another dtype/store)."""
        dtype, store = dtype or self.dtype, store or self.store
        return memory_parts(self.p, self.k, self.rows, 4 if dtype == "float32" else 2,
                            store, self.block, self.block_size, self.chunk_mem,
                            self.tile_bytes, self.panel_bytes, self.threads, self.base_rss,
                            eval_mem=self.eval_mem, sample_bytes=self.sample_bytes,
                            guard=self.guard)

    def describe(self) -> dict:
        """JSON-ready summary (what PruneResult.report() records)."""
        mem = self.memory()
        return {"dtype": self.dtype, "store": self.store, "block": self.block,
                "block_size": self.block_size if self.block else None,
                "n_samples": self.n_samples, "batch_rows": self.batch_rows,
                "rows": self.rows, "store_gb": round(self.store_bytes / GiB, 3),
                "chunk_gb": round(self.chunk_mem / GiB, 3),
                "available_gb": round(self.available / GiB, 2),
                "budget_gb": round(self.budget / GiB, 2),
                "predicted_peak_gb": round(mem["peak"] / GiB, 2),
                "predicted_parts_gb": {key: round(v / GiB, 3) for key, v in mem.items()},
                "reasons": list(self.reasons)}

    def scratch_file(self, stage: int) -> str:
        """Where stage ``stage``'s disk store goes."""
        if self.path is not None:
            return os.fspath(self.path)
        return os.path.join(self.scratch, f"chita-A-{os.getpid()}-{stage}.bin")


def memory_parts(p, k, rows, itemsize, store, block, block_size, chunk_mem, tile_bytes,
                 panel_bytes, threads, base_rss, eval_mem=0, sample_bytes=0,
                 guard=True) -> dict:
    """The peak-RSS formula, part by part (bytes).

    - ``store``: rows x p x itemsize when in RAM, else 0 (a disk store's pages are read
      with file I/O and dropped);
    - ``vectors``: 8 p held through every stage (the stage's float32 w_bar and, with the
      guard, the dense weights it compares against);
    - ``gradients``: 1.5 x the chunk (its activations and one layer's scratch, as the
      per-sample engine measures them on two samples; the half on top covers the output
      gradients autograd holds during the backward), the RAM tile of a disk store
      (``tile_bytes`` at most, one row at least) and the float64 mean-gradient
      accumulator (8 p);
    - ``solve``: block approximation: panels (3 for a disk store: one staged, two
      assembled; 0 in RAM), ``threads`` batches of blocks (``block_solver.WORKER_BYTES``
      each), the lam window being solved (5 lam x (5 p + 8 k): weights, support mask and
      indices) and the 3 candidates the search still holds (3 x (4 p + 8 k)), the paths
      (blocks x cap x (8 x 5 + 4), with the cap at its largest, the block size: a block
      reaches past what magnitude pruning keeps in it) and 24 p of vectors (w_bar, alpha
      in float64, masks); exact solver: three n x n float64 matrices and 32 k;
    - ``evaluation``: the evaluation forwards (``eval_mem``: the plan's ``eval_batch``
      samples of one row's bytes) and 8 p for the candidate being evaluated;
    - ``guard`` (after the last stage, the store freed): one chunk of fresh samples
      (``final_guard.GUARD_CHUNK`` x ``sample_bytes``), the evaluation forwards and 12 p
      (dense, pruned and magnitude-pruned weights);
    - ``peak`` = base + max(store + vectors + max(gradients, solve, evaluation), guard).
    """
    from .block_solver import WORKER_BYTES
    from .final_guard import GUARD_CHUNK
    store_ram = rows * p * itemsize if store == "ram" else 0
    tile = min(tile_bytes, rows * p * itemsize) if store == "disk" else 0
    tile = max(tile, p * itemsize) if store == "disk" else 0
    vectors = 8 * p
    grads = int(1.5 * chunk_mem) + tile + 8 * p
    if block:
        lams = 5
        blocks = -(-p // block_size)
        cap = block_size
        panels = 3 * min(panel_bytes, rows * p * itemsize) if store == "disk" else 0
        per_block = block_size * rows * 8 + block_size * block_size * 4 + 2 * cap * block_size * 4
        batch = min(WORKER_BYTES, blocks * per_block)
        solve = (panels + threads * batch + lams * (5 * p + 8 * k) + 3 * (4 * p + 8 * k)
                 + blocks * cap * (8 * lams + 4) + 24 * p)
    else:
        solve = 3 * 8 * rows * rows + 32 * k
    evaluation = int(eval_mem) + 8 * p
    guard_part = (GUARD_CHUNK * int(sample_bytes) + int(eval_mem) + 12 * p) if guard else 0
    stage = store_ram + vectors + max(grads, solve, evaluation)
    return {"base": base_rss, "store": store_ram, "vectors": vectors, "gradients": grads,
            "solve": solve, "evaluation": evaluation, "guard": guard_part,
            "peak": base_rss + max(stage, guard_part)}


def _check_options(options):
    options = dict(options or {})
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ValueError(f"scale= got unknown option(s) {sorted(unknown)}; known: {OPTIONS}")
    if options.get("store") not in (None, "ram", "disk"):
        raise ValueError(f"scale['store']={options['store']!r}; pass 'ram' or 'disk'")
    if options.get("block") not in (None, True, False):
        raise ValueError(f"scale['block']={options['block']!r}; pass True or False")
    for key in ("ram_budget", "block_size", "chunk_bytes", "panel_bytes", "tile_bytes"):
        v = options.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"scale[{key!r}]={v!r} must be a positive int")
    return options


def plan_scale(p: int, k: int, *, n_samples=None, batch_rows=None, dtype="auto", out=None,
               method: str = "bso", threads: int = 1, options=None, row_bytes=None,
               available=None, free_disk=None, base_rss=None, sample_bytes: int = 0,
               guard: bool = True) -> ScalePlan:
    """Choose the store, its dtype, the chunk budget and the solver for one prune() call.

    Parameters
    ----------
    p, k : int
        Prunable weights and weights kept at the final sparsity.
    n_samples, batch_rows : int or None
        As given to prune(); None: the defaults of :func:`default_samples`.
    dtype : {"auto", "float32", "bfloat16"}
        Store dtype; "auto" lets the plan choose.
    out : path, optional
        The user's ``out=``: a disk store goes there.
    method : str
        prune()'s solver; the block approximation stands in for ``"bso"`` (the default)
        only: any other method runs on the whole A and needs it in RAM.
    threads : int
        Worker threads of the block solver.
    row_bytes : callable, optional
        ``row_bytes(m)``: bytes one row of m samples takes in the gradient pass
        (:meth:`PerSampleEngine.row_bytes`, see :func:`measure_row_bytes`); without it
        the chunk budget is taken as the chunk's size (an upper bound).
    options : dict, optional
        Overrides (``prune(scale=...)``): ``ram_budget`` (bytes the plan may use),
        ``store`` ("ram"/"disk"), ``block`` (bool), ``block_size``, ``scratch`` (directory
        of temporary stores), ``chunk_bytes``, ``panel_bytes``, ``tile_bytes``.
    sample_bytes : int
        Bytes of one training sample (inputs and target): the final guard holds a chunk
        of them.
    guard : bool
        Whether prune() runs the final guard.
    available, free_disk, base_rss : int, optional
        Measured figures (for tests); default: :func:`memory_available`,
        :func:`disk_free` of the store's directory, :func:`current_rss`.

    Raises
    ------
    ValueError
        When the store fits neither the RAM budget nor the disk, naming what to change.
    """
    from .block_solver import BLOCK_SIZE, PANEL_BYTES
    opt = _check_options(options)
    if opt.get("block") and method != "bso":
        raise ValueError(f"scale['block']=True stands in for method='bso'; got method={method!r}")
    if dtype not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"dtype={dtype!r}; pass 'auto', 'float32' or 'bfloat16'")
    n_samples, batch_rows = default_samples(p, n_samples, batch_rows)
    rows = n_samples // batch_rows
    available = memory_available() if available is None else int(available)
    base_rss = current_rss() if base_rss is None else int(base_rss)
    budget = int(opt.get("ram_budget") or RAM_SHARE * available)
    scratch = opt.get("scratch") or os.environ.get("CHITA_SCRATCH") or tempfile.gettempdir()
    where = out if out is not None else scratch
    free = disk_free(where) if free_disk is None else int(free_disk)
    active = p >= SCALE_MIN_P
    # below the scale regime collect_gradients keeps its own default budget (CHUNK_MIN)
    chunk = int(opt.get("chunk_bytes") or (min(CHUNK_MAX, max(CHUNK_MIN, CHUNK_SHARE * budget))
                                           if active else CHUNK_MIN))
    chunk_mem, eval_batch, eval_mem = chunk, EVAL_BATCH, 0
    if row_bytes is not None:  # the chunk the engine will take: whole rows, at least one
        per = max(1, int(row_bytes(batch_rows)))
        chunk_mem = per * max(1, min(rows, chunk // per))
        # evaluation forwards (no autograd) hold less than a sample's row: as many as fit
        one = max(1, int(row_bytes(1)))
        eval_batch = int(max(1, min(EVAL_BATCH, chunk // one)))
        eval_mem = eval_batch * one
    reasons = []
    block_opt = opt.get("block")
    plan = ScalePlan(p=p, k=k, n_samples=n_samples, batch_rows=batch_rows, rows=rows,
                     dtype="float32", store="ram", path=out, scratch=scratch,
                     block=(p >= BLOCK_MIN_P and method == "bso") if block_opt is None
                     else block_opt,
                     block_size=int(opt.get("block_size") or BLOCK_SIZE), chunk_bytes=chunk,
                     tile_bytes=int(opt.get("tile_bytes") or TILE_BYTES),
                     panel_bytes=int(opt.get("panel_bytes") or PANEL_BYTES),
                     threads=max(1, int(threads)), chunk_mem=chunk_mem,
                     available=available, budget=budget,
                     disk_free=free, base_rss=base_rss, active=active,
                     eval_batch=eval_batch, eval_mem=eval_mem,
                     sample_bytes=int(sample_bytes), guard=bool(guard), reasons=reasons)
    if block_opt is None and plan.block:
        reasons.append(f"p = {p:,} >= {BLOCK_MIN_P:,}: block approximation "
                       f"(blocks of {plan.block_size})")

    def fits_ram(dt):
        m = plan.memory(dtype=dt, store="ram")
        return m["peak"] - m["base"] <= budget

    dtypes = ("float32", "bfloat16") if dtype == "auto" else (dtype,)
    want = opt.get("store")
    if out is not None and want is None and active:
        want = "disk"  # the user gave a file for A at this scale
    chosen = None
    if want != "disk":
        for dt in dtypes:
            if fits_ram(dt):
                chosen = (dt, "ram")
                break
        if chosen is None and want == "ram":
            dt = dtypes[-1]
            raise ValueError(
                f"scale['store']='ram' but the {dt} store ({rows * p * (4 if dt == 'float32' else 2) / GiB:.1f} "
                f"GB) and its working set exceed the RAM budget ({budget / GiB:.1f} GB); "
                "pass fewer n_samples (or more batch_rows), or drop store='ram'")
    if chosen is None:
        dt = dtypes[-1] if dtype == "auto" else dtype
        if dtype == "auto":
            dt = "bfloat16"
        need = rows * p * (4 if dt == "float32" else 2)
        if need + DISK_MARGIN > free:
            raise ValueError(
                f"the gradient store needs {need / GiB:.1f} GB ({rows} rows x {p:,} weights, "
                f"{dt}): more than the RAM budget ({budget / GiB:.1f} GB) and than the free "
                f"disk at {where} ({free / GiB:.1f} GB, {DISK_MARGIN / GiB:.0f} GB kept "
                "free); pass fewer n_samples (or more batch_rows), out= a path on a larger "
                "disk, or scale={'scratch': DIR}")
        chosen = (dt, "disk")
        m32 = plan.memory(dtype="bfloat16" if dt == "bfloat16" else "float32", store="ram")
        reasons.append(f"{dt} store in RAM would need {(m32['peak'] - m32['base']) / GiB:.1f}"
                       f" GB > budget {budget / GiB:.1f} GB: {dt} on disk ({need / GiB:.1f} GB)"
                       if want != "disk" else f"store on disk ({need / GiB:.1f} GB)")
    elif chosen[0] == "bfloat16" and dtype == "auto":
        m = plan.memory(dtype="float32", store="ram")
        reasons.append(f"float32 store + working set {(m['peak'] - m['base']) / GiB:.1f} GB"
                       f" > budget {budget / GiB:.1f} GB: bfloat16 in RAM")
    plan.dtype, plan.store = chosen
    if plan.store == "disk" and not plan.block:
        if block_opt is False or method != "bso":
            why = "scale['block']=False" if block_opt is False else f"method={method!r}"
            raise ValueError(f"the gradient store does not fit in RAM, and {why} needs the "
                             "whole A in RAM; use method='bso' (the block approximation reads "
                             "A from disk) or pass fewer n_samples")
        plan.block = True
        reasons.append("store on disk: block approximation (each block read once per pass)")
    plan.active = active or plan.store == "disk" or plan.block
    return plan


def measure_row_bytes(model, loss_fn, sel, x, y):
    """``row_bytes(m)`` of the per-sample engine, probed on two samples (eval mode)."""
    from .persample import PerSampleEngine
    was = model.training
    model.eval()
    try:
        engine = PerSampleEngine(model, loss_fn, sel, "auto")
        if not engine.probed:
            dev = sel.params[0].device
            engine.probe(x[:2].to(dev), y[:2].to(dev))
    finally:
        model.train(was)
    return engine.row_bytes


def estimate_stage_seconds(model, loss_fn, held, plan: ScalePlan, heldout: int,
                           bn_samples: int) -> float:
    """Seconds one stage should take, from one timed forward + backward on a few samples.

    Gradients ~1.3 x forward + backward of ``n_samples``; held-out evaluations (about 8
    per stage: lam search, guard, BatchNorm) and BatchNorm statistics ~ a third of that
    per sample; the block approximation's two passes at ~20 GFLOP/s per thread.
    """
    import torch
    x, y = held
    m = int(min(len(x), 8))
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    try:
        t0 = time.perf_counter()
        with torch.enable_grad():
            loss_fn(model(x[:m].to(dev)), y[:m].to(dev)).backward()
        per = (time.perf_counter() - t0) / m
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was)
    grads = 1.3 * per * plan.n_samples
    evals = per / 3 * (8 * heldout + bn_samples)
    solve = 0.0
    if plan.block:
        solve = 2.0 * plan.p * plan.block_size * plan.rows * 1.5 / (2e10 * plan.threads)
    return grads + evals + solve
