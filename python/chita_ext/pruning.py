"""prune(): CHITA (one stage) and CHITA++ (several stages) on a PyTorch model."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .finetuning import evaluate, finetune, has_batchnorm
from .fisher import FISHERS
from ._arrays import check_threads
from ._threads import load_aware_threads, resolve_threads
from .checks import check_data, check_model_fits
from .final_guard import compare_with_magnitude, guard_count
from .gradients import SampleStream, data_size
from .lam_search import START_REL
from .params import k_from_sparsity, magnitude_masks, resolve_params, select_params
from . import rss_trace
from .progress import phase
from .scale_plan import (EVAL_BATCH, SCALE_MIN_P, default_samples, estimate_stage_seconds,
                         measure_row_bytes, plan_scale)
from .schedules import SCHEDULES
from .stage import StageContext, run_stage
from .stage_plan import StagePlanner, auto_stages

# A relative grid for lam_grid= users who want every value tried (an exhaustive search).
LAM_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
DEFAULT_TIME_BUDGET = 300.0  # seconds, for stages="auto"


@dataclass
class PruneResult:
    """What :func:`prune` did. The model itself is pruned in place (``result.model``).

    Attributes
    ----------
    masks : dict
        ``{param name: bool tensor}``, True where a weight survives.
    densities : dict
        Fraction of surviving weights per pruned tensor.
    sparsity : float
        Achieved global sparsity over the prunable weights.
    target_sparsity : float
    k, p : int
        Weights kept and prunable weights.
    objective : float or None
        Final-stage objective of the solve (None for magnitude pruning).
    lam : float or None
        Absolute lam of the last stage; ``lam_rel`` the relative value.
    stages : list of dict
        Per stage: sparsity, k, lam and lam_rel chosen, every (lam_rel, held-out loss)
        tried, objective, held-out loss, ``winner`` (the solver's method or ``"mp"`` when
        magnitude pruning of that stage's weights had the lower held-out loss), ``bn``
        (``"recalibrated"`` or ``"kept"``), the Fisher diagnostics (temperature, effective
        rows), seconds.
    guard : str
        ``"chita"``, or ``"mp"`` when one-shot magnitude pruning of the dense weights did
        better than the whole CHITA++ path on fresh held-out samples (higher accuracy for
        classifiers, else lower loss); its weights are then returned.
    guard_detail : dict or None
        That comparison's totals: samples used (2048 to 16384, fewer once the difference
        is clear), samples only one of the two gets right, mean losses.
    timings : dict
        Seconds spent in gradients, solve (inside the solvers), lam_search (held-out
        evaluations of the lam candidates), guard (the magnitude comparisons), bn,
        finetune, total.
    metrics : dict
        ``{"before": {...}, "after": {...}}`` from ``eval_data`` (loss, accuracy).
    scale : dict
        What the memory planner chose (store dtype and place, block approximation,
        samples, predicted peak memory) and why; see docs/pruning.md, "Large models".
    distributed : dict or None
        Under torch.distributed: ``ranks``, this ``rank``, ``backend`` and the payload
        bytes of this rank's collectives (``comm``); None for a single-process run.
    """

    model: torch.nn.Module
    masks: dict
    densities: dict
    sparsity: float
    target_sparsity: float
    k: int
    p: int
    method: str
    objective: float | None
    lam: float | None
    lam_rel: float | None
    stages: list = field(default_factory=list)
    guard: str = "chita"
    guard_detail: dict | None = None
    timings: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    distributed: dict | None = None
    scale: dict = field(default_factory=dict)

    def report(self) -> dict:
        """JSON-ready summary (no tensors)."""
        keys = ("method", "target_sparsity", "sparsity", "k", "p", "objective", "lam",
                "lam_rel", "guard", "guard_detail", "densities", "stages", "timings", "metrics",
                "scale")
        rep = {k: getattr(self, k) for k in keys}
        if self.distributed is not None:
            rep["distributed"] = self.distributed
        return rep

    def save_pruned(self, path, **kwargs):
        """Write model, masks and report to directory ``path`` (see :func:`save_pruned`).

        Under torch.distributed only rank 0 writes (every rank holds the same model); the
        call returns on every rank once the directory is complete.
        """
        from .io import save_pruned
        if self.distributed is not None:
            from .distributed.launch import on_rank0
            return on_rank0(lambda: save_pruned(path, self.model, self.masks, self.report(),
                                                **kwargs), result=Path(path),
                            rank_hint=self.distributed["rank"])
        return save_pruned(path, self.model, self.masks, self.report(), **kwargs)


@contextlib.contextmanager
def _torch_threads(threads):
    """Torch's intra-op threads for one stage: no more than ours (``threads``), and with
    ``threads=None`` fewer when other jobs occupy CPUs now (load_aware_threads)."""
    before = torch.get_num_threads()
    want = load_aware_threads(samples=5) if threads is None else resolve_threads(threads)
    if want < before:
        torch.set_num_threads(want)
    try:
        yield
    finally:
        if want < before:
            torch.set_num_threads(before)


def _validate(model, loss_fn, data, sparsity, n_samples, stages, schedule, lam, lam_grid,
              method, fisher, time_budget, bn_samples, heldout, threads, max_iter,
              finetune_steps, batch_rows=None, dtype="auto"):
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable: loss_fn(outputs, targets) -> scalar")
    if isinstance(sparsity, bool) or not isinstance(sparsity, (float, int)) \
            or not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity={sparsity!r} must be a number in [0, 1), e.g. 0.9")
    for name, v in (("n_samples", n_samples), ("batch_rows", batch_rows)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
            raise ValueError(f"{name}={v!r} must be a positive int or None (the default)")
    if n_samples is not None and batch_rows is not None and batch_rows > n_samples:
        raise ValueError(f"batch_rows={batch_rows} must be <= n_samples={n_samples}")
    if dtype not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"dtype={dtype!r}; pass 'auto', 'float32' or 'bfloat16'")
    check_data(data, n_samples)
    if stages != "auto" and (isinstance(stages, bool) or not isinstance(stages, (int, np.integer))
                             or stages < 1):
        raise ValueError(f"stages={stages!r} must be 'auto' or an int >= 1")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r}; choose one of {SCHEDULES}")
    if not (lam == "auto" or (isinstance(lam, (int, float)) and not isinstance(lam, bool)
                              and lam > 0)):
        raise ValueError(f"lam={lam!r}; pass 'auto' or a positive float")
    if lam_grid is not None and (len(lam_grid) == 0 or any(not r > 0 for r in lam_grid)):
        raise ValueError(f"lam_grid={lam_grid!r} must hold positive relative values, e.g. (1e-2, 1e-1, 1)")
    if not isinstance(method, str):
        raise TypeError(f"method={method!r} must be a solver name such as 'bso' or 'iht'")
    from .solve import METHODS
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if fisher not in FISHERS:
        raise ValueError(f"fisher={fisher!r}; choose one of {FISHERS}")
    if time_budget is not None and (isinstance(time_budget, bool) or
                                    not isinstance(time_budget, (int, float)) or time_budget <= 0):
        raise ValueError(f"time_budget={time_budget!r} must be a positive number of seconds or None")
    for name, v, low in (("bn_samples", bn_samples, 1), ("heldout", heldout, 1),
                         ("max_iter", max_iter, 0), ("finetune_steps", finetune_steps, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ValueError(f"{name}={v!r} must be an int >= {low}")
    check_threads(threads)


def _scale_report(plan) -> dict:
    """The plan's summary, with the measured peak RSS of each phase when rss_trace is on."""
    out = plan.describe() if plan is not None else {}
    if rss_trace.enabled():
        out["measured_peak_gb"] = {k: round(v / 2**30, 3) for k, v in rss_trace.peaks().items()}
    return out


def prune(model, loss_fn, data, sparsity, *, method: str = "bso", stages="auto",
          schedule: str = "poly", time_budget=None, n_samples=None, lam="auto",
          lam_grid=None, fisher: str = "auto", grad_term: bool = False,
          recalibrate_bn: bool = True, bn_samples: int = 1024, guard: bool = True,
          params=None, dtype: str = "auto", batch_rows=None, max_iter: int = 100,
          tol: float = 1e-6, threads=None, heldout: int = 512, eval_data=None,
          finetune_steps: int = 0, finetune_lr: float = 0.01, out=None,
          progress: bool = True, solve_kwargs=None, scale=None) -> PruneResult:
    """Prune ``model`` in place to ``sparsity`` with CHITA++ (``stages=1``: one-shot CHITA).

    The defaults are the most accurate pipeline we measured within a few minutes
    (docs/pruning.md, "Defaults"): 16 stages at 90% sparsity and above (fewer below, and
    fewer when ``time_budget`` would be exceeded), fresh per-sample gradients at every
    stage, the exact backsolve on the stage's support, lam chosen per stage on held-out
    loss, and at every stage the better of that and magnitude pruning.

    Parameters
    ----------
    model : torch.nn.Module
        Trained network; its prunable weights (``params``) are overwritten.
    loss_fn : callable
        Batch-mean loss ``loss_fn(outputs, targets)``, applied per sample.
    data : iterable of (inputs, targets)
        Training batches: gradients, the held-out samples every choice is made on, and
        BatchNorm statistics draw from it.
    sparsity : float
        Final fraction of prunable weights set to zero, in [0, 1).
    method : str
        Solver of each stage: ``"bso"`` (default: the exact ridge solution on the k
        largest weights, the lam search shares its Gram matrix), any other
        :func:`chita_ext.solve` method (``"iht"``, ``"auto"``, ``"swap"``...: warm-started
        along the lam search), or ``"mp"`` (global magnitude pruning, no gradients).
    stages : "auto" or int
        CHITA++ stages; ``"auto"`` is ``round(16 log10(1 / (1 - sparsity)))`` capped at 16
        (16 from 90% on, 5 at 50%), shortened to fit ``time_budget``.
    schedule : {"poly", "linear", "exp", "const"}
        Stage sparsities (see :func:`chita_ext.sparsity_schedule`).
    time_budget : float, optional
        Seconds for the whole call. The stages left are re-planned after each stage so that
        they fit (the final sparsity is always reached, so at least one stage runs however
        long it takes). Default: 300 s with ``stages="auto"``, no limit with a fixed count.
    n_samples : int, optional
        Samples per gradient matrix (per stage). Default: 1000 (one per row); from 2M
        prunable weights on, the paper's 500 rows of ``batch_rows`` = 16 samples
        (docs/pruning.md, "Large models").
    lam : "auto" or float
        Ridge weight. A float is absolute. ``"auto"`` chooses at every stage, on held-out
        loss, a relative value lam = rel * ||A||_F^2 / p: a downhill search on a
        half-decade grid starting from the previous stage's choice (a few solves that share
        the lam-independent work), or every value of ``lam_grid`` when given.
    fisher : {"auto", "empirical", "tempered"}
        Gradients that form A. ``"empirical"``: of ``loss_fn`` itself. ``"tempered"``
        (cross-entropy losses): of the loss on outputs / T, T chosen so that the
        gradient rows weigh evenly enough. ``"auto"``: empirical unless that would be
        degenerate (a saturated model whose per-sample gradients are almost all zero),
        then tempered. The effective number of rows is reported per stage.
    grad_term : bool
        Keep the first-order term: alpha = the mean gradient.
    recalibrate_bn : bool
        After each stage, re-estimate BatchNorm running statistics from ``bn_samples``
        training samples, kept only if they lower the held-out loss (never for ``"mp"``).
    guard : bool
        At every stage keep magnitude pruning's weights when their held-out loss is
        lower, and at the end compare with one-shot magnitude pruning of the dense model.
    params : None, list of str or PrunableParams
        Weights to prune; default: conv and linear weights.
    dtype : {"auto", "float32", "bfloat16"}
        Storage of the gradient matrix A; ``"auto"``: float32 when it fits the memory
        comfortably, else bfloat16 (the memory planner, see ``scale``).
    batch_rows : int, optional
        Samples averaged per row of A (see :func:`collect_gradients`); default 1, or 16
        from 2M prunable weights on.
    max_iter, tol, threads : solver settings (iterative methods).
    heldout : int
        Training samples held out (never used for gradients) for every choice.
    eval_data : iterable, optional
        Held-out batches for metrics before/after (loss, accuracy).
    finetune_steps : int
        Gradual pruning: SGD steps (masks enforced) after every stage.
    out : path, optional
        Memory-map A to this file (reused each stage); for a large model, the disk store
        of A goes there.
    progress : bool
        One progress bar (or, off a terminal, one line) per long phase (rank 0 only under
        torch.distributed).
    solve_kwargs : dict, optional
        Extra keyword arguments for :func:`chita_ext.solve`.
    scale : dict, optional
        Overrides of the memory planner (:func:`chita_ext.scale_plan.plan_scale`):
        ``ram_budget`` (bytes), ``store`` ("ram"/"disk"), ``block`` (bool: the block
        approximation instead of the exact backsolve), ``block_size``, ``scratch``
        (directory of temporary disk stores), ``chunk_bytes``, ``panel_bytes``,
        ``tile_bytes``. ``result.scale`` says what was chosen and why.

    Notes
    -----
    Inside an initialised ``torch.distributed`` group of R > 1 ranks (e.g. under
    ``torchrun``) every rank calls ``prune`` with the same arguments and the work is
    sharded: each rank computes the gradients of its share of the samples and holds a
    column block of A, the solves are column-sharded, fine-tuning runs under DDP, and every
    rank ends with the same pruned model (docs/distributed.md, "prune and chita-prune
    under torchrun"). Methods: ``bso``, ``mp``, ``iht``, ``active``, ``block``.

    Returns
    -------
    PruneResult
    """
    t_start = time.perf_counter()
    rss_trace.clear()
    _validate(model, loss_fn, data, sparsity, n_samples, stages, schedule, lam, lam_grid,
              method, fisher, time_budget, bn_samples, heldout, threads, max_iter,
              finetune_steps, batch_rows, dtype)
    sel = resolve_params(model, params) if params is not None else select_params(model)
    # 1000 samples, one per row; from SCALE_MIN_P weights on the paper's 500 rows of 16
    n_samples, batch_rows = default_samples(sel.p, n_samples, batch_rows)
    from .distributed.prune_stage import distributed_stage
    sharded = distributed_stage(method, (float(sparsity), method, stages, schedule,
                                         time_budget, int(n_samples), lam, lam_grid, heldout,
                                         finetune_steps, list(sel.names), sel.p))
    if sharded is not None:  # every rank starts from rank 0's weights, as DDP does
        sharded.sync(model)
        progress = progress and sharded.rank == 0
    # Magnitude pruning of magnitude-pruned weights is one-shot magnitude pruning: one stage.
    n_stages = (1 if method == "mp" else auto_stages(float(sparsity))) if stages == "auto" \
        else int(stages)
    if time_budget is None and stages == "auto":
        time_budget = DEFAULT_TIME_BUDGET
    stream = SampleStream(data, cycle=True)
    evaluate_fn = evaluate if sharded is None else sharded.evaluate
    metrics = {"before": evaluate_fn(model, loss_fn, eval_data)} if eval_data is not None else {}
    needs_heldout = method != "mp"
    held = stream.take(heldout) if needs_heldout else None
    # One forward pass and the loss on a few samples: a model that does not fit the data
    # fails here, in one line, before any gradient work.
    check_model_fits(model, loss_fn, data, batch=None if held is None else
                     (held[0][:8], held[1][:8]))
    plan = None
    if needs_heldout and sharded is None:  # where A lives, its dtype, the solver (scale_plan)
        plan = plan_scale(sel.p, k_from_sparsity(float(sparsity), sel.p), n_samples=n_samples,
                          batch_rows=batch_rows, dtype=dtype, out=out, method=method,
                          threads=resolve_threads(threads), options=scale,
                          row_bytes=measure_row_bytes(model, loss_fn, sel, *held)
                          if sel.p >= SCALE_MIN_P else None,
                          sample_bytes=held[0][0].nbytes + held[1][0].nbytes,
                          guard=guard)
        dtype = plan.dtype
    elif dtype == "auto":
        dtype = "float32"
    check_data(data, n_samples)
    timings = dict.fromkeys(("gradients", "solve", "lam_search", "guard", "finetune", "bn"), 0.0)
    kw = dict(max_iter=max_iter, tol=tol, threads=threads, **(solve_kwargs or {}))
    ctx = StageContext(model=model, loss_fn=loss_fn, data=data, sel=sel, stream=stream,
                       held=held, method=method, n_samples=n_samples, lam=lam,
                       lam_grid=None if lam_grid is None else tuple(lam_grid), fisher=fisher,
                       grad_term=grad_term, bn=recalibrate_bn and has_batchnorm(model)
                       and method != "mp", bn_samples=bn_samples, guard=guard and needs_heldout,
                       dtype=dtype, batch_rows=batch_rows, out=out, solve_kwargs=kw,
                       progress=progress, sharded=sharded,
                       scale=plan if plan is not None and plan.active else None,
                       heldout_batch=plan.eval_batch if plan is not None else EVAL_BATCH)
    dense_w = sel.flatten() if ctx.guard else None
    dense_bn = {k: v.clone() for k, v in model.state_dict().items()} if ctx.guard and ctx.bn \
        else None
    planner = StagePlanner(float(sparsity), n_stages, schedule, time_budget)
    if ctx.scale is not None and stages == "auto" and time_budget is not None:
        # a large model: fit the plan to the budget before the first stage, not after it
        planner.stage_done(0.0, estimate_stage_seconds(model, loss_fn, held, plan, heldout,
                                                       bn_samples))
        n_stages = len(planner.remaining)
    bar = phase(n_stages, "CHITA++ stages", unit="stage", enabled=progress and n_stages > 1)
    stage_info, start_rel = [], START_REL
    for t, s_t in enumerate(planner, start=1):
        t0 = time.perf_counter()
        comm_before = None if sharded is None else sharded.comm.stats.snapshot()
        # Under torch.distributed the ranks keep their thread counts (identical results).
        with _torch_threads(threads) if sharded is None else contextlib.nullcontext():
            info = run_stage(ctx, t, s_t, k_from_sparsity(s_t, sel.p), timings, start_rel)
            start_rel = info.get("lam_rel") or start_rel
            if finetune_steps:
                t1 = time.perf_counter()
                (finetune if sharded is None else sharded.finetune)(
                    model, loss_fn, data, sel.masks(), finetune_steps, lr=finetune_lr,
                    progress=progress)
                timings["finetune"] += time.perf_counter() - t1
        if sharded is not None:
            info["ranks_differed"] = sharded.sync(model)  # False: bitwise equal on every rank
            info["comm_bytes"] = sharded.stage_comm(comm_before)
        stage_info.append(info)
        bar.update(1)
        elapsed, took = time.perf_counter() - t_start, time.perf_counter() - t0
        if sharded is not None:  # every rank re-plans from the same (slowest rank's) times
            elapsed, took = sharded.slowest(elapsed, took)
        planner.stage_done(elapsed, took)
        if planner.replanned:
            bar.total = t + len(planner.remaining)
    bar.close()
    guard_result, guard_detail = "chita", None
    if ctx.guard:  # the whole path against one-shot magnitude pruning of the dense model
        # Fresh samples: the stage choices were made on ctx.held, so comparing there would
        # favour the path.
        elapsed, per_stage = time.perf_counter() - t_start, timings["guard"]
        if sharded is not None:  # every rank takes the same count (the slowest rank's)
            elapsed, per_stage = sharded.slowest(elapsed, per_stage)
        n_max = guard_count(per_stage, len(stage_info), heldout, time_budget, elapsed,
                            data_size(data))
        ours_w = sel.flatten()
        ours_bn = {k: v.clone() for k, v in model.state_dict().items()} if ctx.bn else None
        mp_w = None

        def use_ours():
            sel.assign(ours_w)
            if ctx.bn:
                model.load_state_dict(ours_bn)

        def use_mp():
            nonlocal mp_w
            if ctx.bn:
                model.load_state_dict(dense_bn)
            if mp_w is None:
                sel.assign(dense_w)
                mp_w = magnitude_masks(sel, k_from_sparsity(float(sparsity), sel.p))
            sel.assign(mp_w)

        guard_result, tally, took = compare_with_magnitude(model, loss_fn, stream, n_max,
                                                           use_ours, use_mp,
                                                           batch=ctx.heldout_batch)
        guard_detail = tally.report()
        timings["guard"] += took
    if eval_data is not None:
        metrics["after"] = evaluate_fn(model, loss_fn, eval_data)
    timings["total"] = time.perf_counter() - t_start
    masks = sel.masks()
    nnz = sum(int(m.sum()) for m in masks.values())
    last = stage_info[-1]
    return PruneResult(model=model, masks=masks, densities=sel.densities(),
                       sparsity=1.0 - nnz / sel.p, target_sparsity=float(sparsity),
                       k=last["k"], p=sel.p, method=method,
                       objective=last.get("objective"), lam=last.get("lam"),
                       lam_rel=last.get("lam_rel"), stages=stage_info, guard=guard_result,
                       guard_detail=guard_detail,
                       timings=timings, metrics=metrics,
                       scale=_scale_report(plan),
                       distributed=None if sharded is None else sharded.summary())
