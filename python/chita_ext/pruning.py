"""prune(): CHITA (one stage) and CHITA++ (several stages) on a PyTorch model."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .finetuning import evaluate, finetune, has_batchnorm
from .finetuning import recalibrate_bn as _recalibrate_bn
from .gradients import SampleStream, collect_gradients, data_size
from .params import k_from_sparsity, magnitude_masks, resolve_params, select_params
from .schedules import SCHEDULES, sparsity_schedule

LAM_GRID = (1e-4, 1e-3, 1e-2, 1e-1)


def _solver():
    """chita_ext.solve, looked up at call time (the compiled core)."""
    import chita_ext
    return chita_ext.solve


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
        Per stage: sparsity, k, lam, objective, iterations, timings.
    timings : dict
        Seconds spent in gradients, solve, lam search, fine-tuning, BN, total.
    metrics : dict
        ``{"before": {...}, "after": {...}}`` from ``eval_data`` (loss, accuracy).
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
    timings: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    solve_results: list = field(default_factory=list, repr=False)

    def report(self) -> dict:
        """JSON-ready summary (no tensors)."""
        keys = ("method", "target_sparsity", "sparsity", "k", "p", "objective", "lam",
                "lam_rel", "densities", "stages", "timings", "metrics")
        return {k: getattr(self, k) for k in keys}

    def save_pruned(self, path, **kwargs):
        """Write model, masks and report to directory ``path`` (see :func:`save_pruned`)."""
        from .io import save_pruned
        return save_pruned(path, self.model, self.masks, self.report(), **kwargs)


def _validate(model, loss_fn, data, sparsity, n_samples, stages, schedule, lam, lam_grid,
              method):
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable: loss_fn(outputs, targets) -> scalar")
    if isinstance(sparsity, bool) or not isinstance(sparsity, (float, int)) \
            or not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity={sparsity!r} must be a number in [0, 1), e.g. 0.9")
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples={n_samples!r} must be a positive int")
    size = data_size(data)
    if size is not None and n_samples > size:
        raise ValueError(f"n_samples={n_samples} is larger than the data ({size} samples); "
                         f"pass n_samples <= {size}")
    if isinstance(stages, bool) or int(stages) != stages or stages < 1:
        raise ValueError(f"stages={stages!r} must be an int >= 1")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r}; choose one of {SCHEDULES}")
    if not (lam == "auto" or (isinstance(lam, (int, float)) and lam > 0)):
        raise ValueError(f"lam={lam!r}; pass 'auto' or a positive float")
    if lam == "auto" and (not lam_grid or any(not r > 0 for r in lam_grid)):
        raise ValueError(f"lam_grid={lam_grid!r} must hold positive relative values, e.g. (1e-3,)")
    if not isinstance(method, str):
        raise TypeError(f"method={method!r} must be a solver name such as 'iht'")


def _pick_lam(A, w_bar, k, grid, scale, alpha, heldout, model, loss_fn, sel, solve, kw):
    """Solve once per relative lam in ``grid``; keep the lowest held-out loss."""
    best = None
    for rel in grid:
        res = solve(A, w_bar, k, lam=rel * scale, alpha=alpha, **kw)
        sel.assign(res.w)
        loss = evaluate(model, loss_fn, [heldout])["loss"]
        if best is None or loss < best[0]:
            best = (loss, rel, res)
    sel.assign(w_bar)
    return best


def prune(model, loss_fn, data, sparsity, *, method: str = "iht", n_samples: int = 1000,
          lam="auto", lam_grid=LAM_GRID, stages: int = 1, schedule: str = "poly",
          grad_term: bool = False, recalibrate_bn: bool = True, params=None,
          dtype: str = "float32", batch_rows: int = 1, max_iter: int = 100, tol: float = 1e-6,
          threads=None, heldout: int = 512, eval_data=None, finetune_steps: int = 0,
          finetune_lr: float = 0.01, out=None, progress: bool = False,
          solve_kwargs=None) -> PruneResult:
    """Prune ``model`` in place to ``sparsity`` with CHITA (``stages=1``) or CHITA++.

    Parameters
    ----------
    model : torch.nn.Module
        Trained network; its prunable weights (``params``) are overwritten.
    loss_fn : callable
        Batch-mean loss ``loss_fn(outputs, targets)``, applied per sample.
    data : iterable of (inputs, targets)
        Training batches; gradients, held-out lam selection and BN statistics draw from it.
    sparsity : float
        Final fraction of prunable weights set to zero, in [0, 1).
    method : str
        Passed to :func:`chita_ext.solve` (``"iht"``, ``"bso"``, ...); ``"mp"`` is global
        magnitude pruning and needs no gradients.
    n_samples : int
        Samples per gradient matrix (per stage).
    lam : "auto" or float
        Ridge weight. A float is absolute. ``"auto"`` tries ``lam_grid`` (relative values,
        lam = rel * ||A||_F^2 / p) and keeps the one with the lowest loss on ``heldout``
        training samples, at every stage (so a search costs len(lam_grid) solves per
        stage). ``lam_grid=(r,)`` just sets the relative value.
    stages : int
        CHITA++: per stage, recompute gradients at the current weights on a fresh
        sub-sample, set w_bar to them, and solve at the scheduled sparsity.
    schedule : {"poly", "linear", "exp", "const"}
        Stage sparsities (see :func:`chita_ext.schedules.sparsity_schedule`).
    grad_term : bool
        Keep the first-order term: alpha = the mean gradient.
    recalibrate_bn : bool
        Recompute BatchNorm running statistics after each stage (BN nets only).
    params : None, list of str or PrunableParams
        Weights to prune; default: conv and linear weights.
    dtype : {"float32", "bfloat16"}
        Storage of the gradient matrix A.
    batch_rows : int
        Samples averaged per row of A (see :func:`collect_gradients`).
    max_iter, tol, threads : solver settings.
    eval_data : iterable, optional
        Held-out batches for metrics before/after (loss, accuracy).
    finetune_steps : int
        Gradual pruning: SGD steps (masks enforced) after every stage.
    out : path, optional
        Memory-map A to this file (reused each stage).
    solve_kwargs : dict, optional
        Extra keyword arguments for :func:`chita_ext.solve`.

    Returns
    -------
    PruneResult
    """
    t_start = time.perf_counter()
    _validate(model, loss_fn, data, sparsity, n_samples, stages, schedule, lam, lam_grid, method)
    sel = resolve_params(model, params) if params is not None else select_params(model)
    solve = _solver() if method != "mp" else None
    kw = dict(method=method, max_iter=max_iter, tol=tol, threads=threads, **(solve_kwargs or {}))
    stream = SampleStream(data, cycle=True)
    metrics = {"before": evaluate(model, loss_fn, eval_data)} if eval_data is not None else {}
    held = stream.take(min(heldout, n_samples)) if lam == "auto" and method != "mp" else None
    timings = dict.fromkeys(("gradients", "solve", "lam_search", "finetune", "bn"), 0.0)
    lam_rel = None if lam != "auto" else (lam_grid[0] if len(lam_grid) == 1 else None)
    search = lam == "auto" and len(lam_grid) > 1
    stage_info, results, res = [], [], None
    bn = recalibrate_bn and has_batchnorm(model)
    plan = sparsity_schedule(float(sparsity), int(stages), schedule)
    for t, s_t in enumerate(_stage_bar(plan, progress), start=1):
        k = k_from_sparsity(s_t, sel.p)
        w_bar = sel.flatten()
        info = {"stage": t, "sparsity": s_t, "k": k}
        if method == "mp":
            sel.assign(magnitude_masks(sel, k))
        else:
            t0 = time.perf_counter()
            store = collect_gradients(model, loss_fn, data, n_samples, params=sel, dtype=dtype,
                                      batch_rows=batch_rows, out=out, stream=stream,
                                      progress=progress)
            timings["gradients"] += time.perf_counter() - t0
            scale = store.fro_norm_sq() / sel.p
            alpha = store.mean_grad.astype(np.float32) if grad_term else None
            if search:
                t0 = time.perf_counter()
                hl, lam_rel, res = _pick_lam(store.A, w_bar, k, lam_grid, scale, alpha, held,
                                             model, loss_fn, sel, solve, kw)
                timings["lam_search"] += time.perf_counter() - t0
                info["heldout_loss"] = hl
            else:
                t0 = time.perf_counter()
                lam_abs = float(lam) if lam != "auto" else lam_rel * scale
                res = solve(store.A, w_bar, k, lam=lam_abs, alpha=alpha, **kw)
                timings["solve"] += time.perf_counter() - t0
            sel.assign(res.w)
            results.append(res)
            lam_used = float(lam) if lam != "auto" else lam_rel * scale
            info.update(lam=lam_used, lam_rel=lam_used / scale, objective=float(res.objective),
                        iterations=int(res.iterations), solve_seconds=float(res.seconds))
            del store
        if finetune_steps:
            t0 = time.perf_counter()
            finetune(model, loss_fn, data, sel.masks(), finetune_steps, lr=finetune_lr)
            timings["finetune"] += time.perf_counter() - t0
        if bn:
            t0 = time.perf_counter()
            _recalibrate_bn(model, data, stream=stream)
            timings["bn"] += time.perf_counter() - t0
        stage_info.append(info)
    if eval_data is not None:
        metrics["after"] = evaluate(model, loss_fn, eval_data)
    timings["total"] = time.perf_counter() - t_start
    masks = sel.masks()
    nnz = sum(int(m.sum()) for m in masks.values())
    last = stage_info[-1]
    return PruneResult(model=model, masks=masks, densities=sel.densities(),
                       sparsity=1.0 - nnz / sel.p, target_sparsity=float(sparsity),
                       k=last["k"], p=sel.p, method=method,
                       objective=last.get("objective"), lam=last.get("lam"),
                       lam_rel=last.get("lam_rel"), stages=stage_info, timings=timings,
                       metrics=metrics, solve_results=results)


def _stage_bar(plan, progress):
    if progress and len(plan) > 1:
        from tqdm.auto import tqdm
        return tqdm(plan, desc="stages", unit="stage")
    return plan
