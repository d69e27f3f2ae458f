"""One CHITA++ stage: gradients, lam on held-out loss, the magnitude safeguard, BatchNorm.

:func:`chita_ext.prune` runs :func:`run_stage` once per stage of its plan. Every choice a
stage makes (which lam, the solver's weights or magnitude pruning's, BatchNorm statistics
re-estimated or not) is made on the loss of held-out training samples, one forward pass
per candidate, and recorded in the stage's report.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from . import fisher as fisher_mod
from . import rss_trace, scale_stage
from .finetuning import recalibrate_bn
from .gradients import collect_gradients
from .lam_search import LamChoice, search_grid, search_lam
from .params import magnitude_masks
from .progress import phase

#: held-out samples whose outputs choose the Fisher's temperature (fisher="auto"/"tempered")
TEMPER_SAMPLES = 512


def _solver():
    """chita_ext.solve, looked up at call time (the compiled core)."""
    import chita_ext
    return chita_ext.solve


@dataclass
class StageContext:
    """What every stage of one prune() call shares."""

    model: torch.nn.Module
    loss_fn: object
    data: object
    sel: object            # PrunableParams
    stream: object         # SampleStream over the training data
    held: tuple            # (inputs, targets) held out for every choice
    method: str
    n_samples: int
    lam: object            # "auto" or a float
    lam_grid: object       # None (adaptive search) or a sequence of relative values
    fisher: str
    grad_term: bool
    bn: bool               # the model has BatchNorm statistics to re-estimate
    bn_samples: int
    guard: bool
    dtype: str
    batch_rows: int
    out: object
    solve_kwargs: dict
    progress: bool
    heldout_batch: int = 256  # samples per evaluation forward (the plan's eval_batch)
    sharded: object = None  # distributed.prune_stage.DistributedStage under torch.distributed
    scale: object = None    # a ScalePlan (large models, disk stores): see scale_stage


@torch.no_grad()
def loss_and_correct(model, loss_fn, x, y, batch: int):
    """(loss summed over the samples, inf if not finite; per-sample correctness for
    class-index targets, else None) of ``model`` on ``x, y``, eval mode, in batches."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    total, correct = 0.0, []
    try:
        with rss_trace.phase("evaluation"):
            for a in range(0, len(x), batch):
                xb, yb = x[a:a + batch].to(dev), y[a:a + batch].to(dev)
                out = model(xb)
                total += float(loss_fn(out, yb)) * len(xb)
                if correct is not None and out.dim() == 2 and yb.dim() == 1 \
                        and not yb.is_floating_point():
                    correct.append((out.argmax(1) == yb).cpu())
                else:
                    correct = None
    finally:
        model.train(was)
    if not np.isfinite(total):
        total = float("inf")
    return total, None if correct is None else torch.cat(correct)


def heldout_loss(ctx: StageContext) -> float:
    """Mean loss of the model on the held-out samples (eval mode, in batches)."""
    if ctx.sharded is not None:  # the same batches shared over the ranks, the same value
        return ctx.sharded.heldout_loss(ctx)
    x, y = ctx.held
    return loss_and_correct(ctx.model, ctx.loss_fn, x, y, ctx.heldout_batch)[0] / max(1, len(x))


def _bn_state(model):
    return {k: v.clone() for k, v in model.state_dict().items()
            if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


def _gradient_loss(ctx: StageContext, info: dict):
    """The loss whose per-sample gradients form A: the user's, or its tempered version when
    the empirical Fisher would be degenerate (``fisher="auto"``, cross-entropy losses)."""
    if ctx.fisher == "empirical" or not fisher_mod.is_cross_entropy(ctx.loss_fn):
        info["temperature"] = 1.0
        return ctx.loss_fn
    x, y = ctx.held
    x, y = x[:TEMPER_SAMPLES], y[:TEMPER_SAMPLES]
    out = fisher_mod.logits(ctx.model, x, ctx.heldout_batch)
    share = fisher_mod.TARGET_SHARE if ctx.fisher == "tempered" else fisher_mod.DEGENERATE_SHARE
    T = fisher_mod.temperature_from_logits(out, y, share)
    if ctx.fisher == "auto" and T > 1.0:  # degenerate at T = 1: aim for the target share
        T = fisher_mod.temperature_from_logits(out, y, fisher_mod.TARGET_SHARE)
    if ctx.sharded is not None:
        T = ctx.sharded.agree(T)
    info["temperature"] = T
    return fisher_mod.tempered(ctx.loss_fn, T)


def _local_candidates(ctx, store, w_bar, k, timings):
    """``(scale, candidate)``: lam = rel * scale, ``candidate(rel)`` the SolveResult."""
    p = ctx.sel.p
    scale = store.fro_norm_sq() / p
    alpha = store.mean_grad.astype(np.float32) if ctx.grad_term else None
    kw = dict(ctx.solve_kwargs)
    path, last = None, {}
    if ctx.method == "bso" and "w0" not in kw:
        from .ridge_path import RidgePath
        t0 = time.perf_counter()
        with rss_trace.phase("solve"):
            path = RidgePath(store.A, w_bar, k, alpha=alpha, threads=kw.get("threads"))
        timings["solve"] += time.perf_counter() - t0
    solve = _solver()

    def candidate(rel):
        t0 = time.perf_counter()
        with rss_trace.phase("solve"):
            if path is not None:
                res = path.solve(rel * scale)
            else:
                w0 = last.get("w")
                res = solve(store.A, w_bar, k, lam=rel * scale, alpha=alpha,
                            method=ctx.method, **kw,
                            **({"w0": w0} if w0 is not None and "w0" not in kw else {}))
                last["w"] = res.w
        timings["solve"] += time.perf_counter() - t0
        return res
    return scale, candidate


def _solve_candidates(ctx, store, w_bar, k, timings, start_rel, info):
    """Search lam; returns the LamChoice whose candidate is a SolveResult."""
    candidates = ctx.sharded.candidates if ctx.sharded is not None else _local_candidates
    scale, candidate = candidates(ctx, store, w_bar, k, timings)

    def evaluate(rel):
        res = candidate(rel)
        ctx.sel.assign(res.w)
        return heldout_loss(ctx), res

    t0 = time.perf_counter()
    solve_before = timings["solve"]
    if ctx.lam != "auto":
        res = candidate(float(ctx.lam) / scale)
        ctx.sel.assign(res.w)
        choice = LamChoice(rel=float(ctx.lam) / scale, loss=heldout_loss(ctx), candidate=res,
                           tried=[])
    elif ctx.lam_grid is not None:
        choice = search_grid(evaluate, ctx.lam_grid)
    else:
        choice = search_lam(evaluate, start=start_rel)
    timings["lam_search"] += time.perf_counter() - t0 - (timings["solve"] - solve_before)
    info["lam_scale"] = scale
    return choice


def run_stage(ctx: StageContext, t: int, s_t: float, k: int, timings: dict,
              start_rel: float) -> dict:
    """Prune the model in place to k weights (stage t at sparsity s_t); returns its report."""
    sel = ctx.sel
    info = {"stage": t, "sparsity": s_t, "k": k}
    w_bar = sel.flatten()
    t_stage = time.perf_counter()
    if ctx.method == "mp":
        sel.assign(magnitude_masks(sel, k))
        info.update(winner="mp", seconds=time.perf_counter() - t_stage)
        return info

    t0 = time.perf_counter()
    grad_loss = _gradient_loss(ctx, info)
    with rss_trace.phase("gradients"):
        if ctx.scale is not None:
            store = scale_stage.collect_for_stage(ctx, grad_loss, t)
        else:
            collect = ctx.sharded.collect_gradients if ctx.sharded is not None \
                else collect_gradients
            store = collect(ctx.model, grad_loss, ctx.data, ctx.n_samples, params=sel,
                            dtype=ctx.dtype, batch_rows=ctx.batch_rows, out=ctx.out,
                            stream=ctx.stream, progress=ctx.progress)
        diagnose = ctx.sharded.diagnose if ctx.sharded is not None else fisher_mod.diagnose
        diag = diagnose(store)
    info["fisher"] = {"temperature": info.pop("temperature"),
                      "effective_rows": round(diag["effective_rows"], 1),
                      "zero_rows": round(diag["zero_rows"], 4)}
    if diag["degenerate"]:
        warnings.warn(
            f"stage {t}: the gradient matrix is nearly degenerate ({diag['effective_rows']:.1f} "
            f"effective rows of {store.n}): the model fits these samples almost perfectly, so "
            "the Fisher estimate carries little information; fisher='auto' tempers "
            "cross-entropy losses, otherwise pass more or harder samples", stacklevel=3)
    timings["gradients"] += time.perf_counter() - t0

    bar = phase(None, f"stage {t} lam search + solve", unit="eval", enabled=ctx.progress)
    if ctx.scale is not None and ctx.scale.block:
        choice = scale_stage.block_lam_search(ctx, store, w_bar, k, timings, start_rel, info)
    else:
        choice = _solve_candidates(ctx, store, w_bar, k, timings, start_rel, info)
    bar.update(max(1, choice.evaluations))
    res = choice.candidate
    info.update(lam=choice.rel * info["lam_scale"], lam_rel=choice.rel,
                objective=float(res.objective), iterations=int(res.iterations),
                solve_seconds=float(res.seconds), heldout_loss=choice.loss,
                lam_tried=[[r, l] for r, l in choice.tried],
                winner="block" if ctx.scale is not None and ctx.scale.block else ctx.method)
    info["stop_reason"] = res.info.get("stop_reason") if res.info else None
    scale_stage.release(store)
    del store
    best_w, best_loss = res.w, choice.loss

    if ctx.guard:  # never worse than magnitude pruning of this stage's weights
        t0 = time.perf_counter()
        sel.assign(w_bar)
        mp_w = magnitude_masks(sel, k)
        sel.assign(mp_w)
        mp_loss = heldout_loss(ctx)
        info["mp_heldout_loss"] = mp_loss
        if mp_loss < best_loss:
            best_w, best_loss, info["winner"] = mp_w, mp_loss, "mp"
        timings["guard"] += time.perf_counter() - t0
    sel.assign(best_w)
    info["heldout_loss"] = best_loss

    if ctx.bn:  # re-estimate BatchNorm statistics; keep them only if they help
        t0 = time.perf_counter()
        before = _bn_state(ctx.model)
        with rss_trace.phase("bn"):
            recalibrate_bn(ctx.model, ctx.data, n_samples=ctx.bn_samples,
                           batch=min(128, ctx.heldout_batch), stream=ctx.stream)
        bn_loss = heldout_loss(ctx)
        if bn_loss < best_loss:
            info["bn"], info["heldout_loss"] = "recalibrated", bn_loss
        else:
            ctx.model.load_state_dict(before, strict=False)
            info["bn"] = "kept"
        timings["bn"] += time.perf_counter() - t0
    bar.set_postfix_str(f"s={s_t:.4f} lam_rel={choice.rel:.3g} {info['winner']} "
                        f"held-out {info['heldout_loss']:.4g}")
    bar.close()
    info["seconds"] = time.perf_counter() - t_stage
    return info
