"""A CHITA++ stage at scale: the planned gradient store and the block approximation's lam
search. :func:`chita_ext.stage.run_stage` calls these when ``prune()`` made a
:class:`~chita_ext.scale_plan.ScalePlan` (large models, or a store that needs the disk).
"""
from __future__ import annotations

import time

from . import rss_trace
from ._malloc import release_free_memory
from .block_solver import BlockSolver, columns_of
from .gradients import collect_gradients
from .lam_search import REL_BOUNDS, LamChoice, grid_index, grid_value, search_grid, search_lam
from .tiled_gradients import collect_tiled

#: grid points around the first lam asked for that one pair of passes solves (the walk of
#: search_lam asks for i, i - 1, i + 1 first); later windows add two points ahead.
FIRST_WINDOW = (-2, -1, 0, 1, 2)
NEXT_WINDOW = (0, 1)


def collect_for_stage(ctx, grad_loss, stage: int):
    """Stage ``stage``'s gradient store, where and in what dtype the plan says."""
    plan = ctx.scale
    kw = dict(params=ctx.sel, dtype=plan.dtype, batch_rows=ctx.batch_rows,
              max_chunk_bytes=plan.chunk_bytes, stream=ctx.stream, progress=ctx.progress)
    if plan.store == "disk":
        store = collect_tiled(ctx.model, grad_loss, ctx.data, ctx.n_samples,
                              plan.scratch_file(stage), tile_bytes=plan.tile_bytes, **kw)
    else:
        store = collect_gradients(ctx.model, grad_loss, ctx.data, ctx.n_samples, out=ctx.out,
                                  **kw)
    release_free_memory()  # the chunks' activations and scratch, freed
    return store


def release(store) -> None:
    """Free a stage's store now (a disk store's file is deleted)."""
    close = getattr(store, "close", None)
    if close is not None:
        close()
    release_free_memory()


def _window(rel, solved, offsets):
    """Grid points to solve together with ``rel`` (those not in ``solved`` yet)."""
    i = grid_index(rel)
    if abs(grid_value(i) - rel) > 1e-9 * rel:  # off the grid (a user value): alone
        return [rel]
    lo, hi = (grid_index(b) for b in REL_BOUNDS)
    return [grid_value(i + o) for o in offsets
            if lo <= i + o <= hi and (i + o) not in solved] or [rel]


def block_lam_search(ctx, store, w_bar, k, timings, start_rel, info) -> LamChoice:
    """Choose lam on held-out loss with the block approximation (as prune() does with
    RidgePath): each window of lam values costs two passes over the store, every lam of
    it is a candidate; the walk of :func:`search_lam` asks for more only past the window.
    """
    from .stage import heldout_loss
    plan = ctx.scale
    p = ctx.sel.p
    scale = store.fro_norm_sq() / p
    if not scale > 0:
        raise ValueError("the gradient matrix is all zeros (the loss is flat at these "
                         "weights); pass other samples or check loss_fn")
    alpha = store.mean_grad if ctx.grad_term else None
    t0 = time.perf_counter()
    solver = BlockSolver(columns_of(store), w_bar, k, ctx.sel.sizes,
                         block_size=plan.block_size, alpha=alpha, threads=plan.threads,
                         panel_bytes=plan.panel_bytes, col_scale=scale,
                         progress=ctx.progress)
    # solved lams not asked for yet (each result holds a p-vector: handed over on first
    # use, so only the current window's wait here); ``solved``: every grid point solved
    cache, solved, first = {}, set(), [True]
    setup = time.perf_counter() - t0
    solve_seconds = [setup]

    def candidate(rel):
        key = grid_index(rel)
        if key not in cache or abs(cache[key][0] - rel) > 1e-9 * rel:
            window = _window(rel, solved, FIRST_WINDOW if first[0] else NEXT_WINDOW)
            first[0] = False
            t1 = time.perf_counter()
            with rss_trace.phase("solve"):
                results = solver.solve_window([r * scale for r in window],
                                              centre=rel * scale)
            release_free_memory()  # the passes' block batches and scores, freed
            solve_seconds[0] += time.perf_counter() - t1
            for r, res in zip(window, results):
                cache[grid_index(r)] = (r, res)
                solved.add(grid_index(r))
        return cache.pop(key)[1]

    def evaluate(rel):
        res = candidate(rel)
        ctx.sel.assign(res.w)
        return heldout_loss(ctx), res

    t_search = time.perf_counter()
    if ctx.lam != "auto":
        rel = float(ctx.lam) / scale
        res = candidate(rel)
        ctx.sel.assign(res.w)
        choice = LamChoice(rel=rel, loss=heldout_loss(ctx), candidate=res, tried=[])
    elif ctx.lam_grid is not None:
        choice = search_grid(evaluate, ctx.lam_grid)
    else:
        choice = search_lam(evaluate, start=start_rel)
    searched = time.perf_counter() - t_search
    timings["solve"] += solve_seconds[0]
    # held-out evaluations only (the solves inside the search are counted above)
    timings["lam_search"] += searched - (solve_seconds[0] - setup)
    info["lam_scale"] = scale
    res = choice.candidate
    info["block"] = {key: res.info[key] for key in ("blocks", "block_size", "path_cap",
                                                    "saturated", "kept", "centre_lam")}
    info["block"].update(passes=solver.passes,
                         pass_seconds=[round(s, 2) for s in solver.pass_seconds],
                         lams_solved=len(solved))
    info["mp_objective"] = res.info["mp_objective"]
    info["block_objective"] = res.info["block_objective"]
    return choice
