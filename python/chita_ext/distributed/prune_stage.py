"""prune() over the ranks of a process group: the pieces of a CHITA++ stage that differ.

:func:`chita_ext.prune` asks :func:`distributed_stage` for a :class:`DistributedStage`
when ``torch.distributed`` is initialised with more than one rank; the stage logic itself
(lam search, magnitude guard, BatchNorm choice) stays in :mod:`chita_ext.stage` and runs
the same on every rank. What changes:

* gradients: :func:`chita_ext.distributed.collect_gradients` on the shared sample stream
  (rank r computes the rows of its block of samples; an all-to-all leaves it with its
  column block of A);
* the solve: :class:`ShardedRidgePath` for ``"bso"`` (the Gram all-reduced once per stage,
  then per lam the same small solve on every rank), :func:`chita_ext.distributed.solve` for
  the other methods; each candidate's weights are assembled on every rank by an
  all-gather of the p-vector (A is never gathered);
* held-out losses and metrics: each rank evaluates a share of the batches, the sums are
  combined in batch order (the single-process value, the same on every rank);
* after every stage the model is checked to be bitwise identical on every rank (rank 0's
  state is broadcast if not); fine-tuning runs under DDP.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .. import fisher as fisher_mod
from ..result import SolveResult
from . import evaluation
from .comm import Comm, CommStats
from .finetune import finetune_ddp
from .gradients import collect_gradients
from .layout import balanced_ranges
from .ridge_path import ShardedRidgePath
from .solve import METHODS as SOLVE_METHODS
from .solve import solve as sharded_solve
from .sync import sync_model

# prune()'s methods under torch.distributed: those of the sharded solve ("mp" needs no
# gradients at all: every rank prunes its identical copy by magnitude).
METHODS = SOLVE_METHODS


def distributed_stage(method: str, settings: tuple, group=None):
    """A :class:`DistributedStage` when a process group of 2 or more ranks is initialised,
    else None (single-process prune).

    Collective. Raises ValueError on every rank for a method that does not run distributed,
    or when the ranks were given different settings (``settings``: the arguments that must
    agree, e.g. sparsity, method, n_samples and the prunable weights).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) < 2:
        return None
    comm = Comm(group)
    every = comm.gather_objects((method, settings))  # first: no rank raises alone
    if any(s != every[0] for s in every):
        raise ValueError("prune() was called with different arguments on different ranks: "
                         f"{every}; pass the same model, data and options on every rank")
    if method not in METHODS:
        raise ValueError(f"method={method!r} does not run under torch.distributed; choose one "
                         f"of {', '.join(METHODS)} (or call prune() outside a process group)")
    return DistributedStage(comm)


def _rank_path(out, rank: int):
    """The memory-map file of this rank: ``A.npy`` -> ``A.rank1.npy``."""
    path = Path(out)
    return path.with_name(f"{path.stem}.rank{rank}{path.suffix or '.npy'}")


def _assemble(comm: Comm, res, sizes) -> SolveResult:
    """A global SolveResult (every rank: the whole p-vector) from this rank's slice: one
    all-gather of the float32 weights and one of a byte per weight marking the support."""
    w = comm.all_gather(torch.from_numpy(res.w), sizes).numpy()
    on = torch.zeros(res.w.size, dtype=torch.uint8)
    on[torch.from_numpy(np.asarray(res.support, dtype=np.int64))] = 1
    support = np.flatnonzero(comm.all_gather(on, sizes).numpy()).astype(np.int64)
    info = {key: v for key, v in res.info.items() if key not in ("global_support", "comm")}
    return SolveResult(w=w, support=support, objective=res.objective, history=res.history,
                       iterations=res.iterations, seconds=res.seconds, method=res.method,
                       converged=res.converged, info=info)


class DistributedStage:
    """The distributed implementations :mod:`chita_ext.stage` and :func:`chita_ext.prune`
    call instead of their single-process ones (see the module docstring).

    Attributes
    ----------
    comm : Comm
        The group; ``comm.stats`` counts the payload bytes of everything below except the
        solver calls, whose counts are merged in.
    rank, size : int
    """

    def __init__(self, comm: Comm):
        self.comm, self.rank, self.size = comm, comm.rank, comm.size

    # ---- gradients -----------------------------------------------------------------------
    def collect_gradients(self, model, loss_fn, data, n_samples, *, params, dtype, batch_rows,
                          out, stream, progress=False):
        """This rank's column block of A for the next ``n_samples`` of the shared stream."""
        del progress  # the sharded collection has no bar
        return collect_gradients(model, loss_fn, data, n_samples, params=params, dtype=dtype,
                                 batch_rows=batch_rows,
                                 out=None if out is None else _rank_path(out, self.rank),
                                 stream=stream, group=self.comm.group, stats=self.comm.stats)

    def diagnose(self, store) -> dict:
        """:func:`chita_ext.fisher.diagnose` on the whole A (row energies all-reduced)."""
        # A copy: the all-reduce works in place and the store caches its (local) energies.
        energies = self.comm.sum(store.row_energies().clone(), "fisher")
        return fisher_mod.diagnose(store, energies=energies)

    # ---- the solve -------------------------------------------------------------------------
    def candidates(self, ctx, store, w_bar, k, timings):
        """``(scale, candidate)`` as :func:`chita_ext.stage._local_candidates`: scale =
        ||A||_F^2 / p over all ranks, ``candidate(rel)`` a SolveResult whose ``w`` is the
        whole p-vector (the same on every rank)."""
        comm = self.comm
        p = store.p_total
        scale = comm.sum_scalars(store.fro_norm_sq())[0] / p
        a, b = store.column_range
        w_local = np.ascontiguousarray(w_bar[a:b])
        alpha = store.mean_grad.astype(np.float32) if ctx.grad_term else None
        sizes = [hi - lo for lo, hi in balanced_ranges(p, comm.size)]
        kw = dict(ctx.solve_kwargs)
        if kw.get("w0") is not None:  # a user's warm start: this rank's slice of it
            kw["w0"] = np.asarray(kw["w0"], dtype=np.float32)[a:b]
        path, last = None, {}
        if ctx.method == "bso" and "w0" not in kw:
            t0 = time.perf_counter()
            path = ShardedRidgePath(store.A_local, w_local, k, alpha_local=alpha,
                                    threads=kw.get("threads"), comm=comm)
            timings["solve"] += time.perf_counter() - t0

        def candidate(rel):
            t0 = time.perf_counter()
            if path is not None:
                res = path.solve(rel * scale)
            else:
                w0 = last.get("w")
                res = sharded_solve(store.A_local, w_local, k, lam=rel * scale, alpha=alpha,
                                    method=ctx.method, group=comm.group,
                                    **({"w0": w0} if w0 is not None and "w0" not in kw
                                       else {}), **kw)
                comm.stats.merge(res.info.pop("comm", {}))
                last["w"] = res.w
            full = _assemble(comm, res, sizes)
            timings["solve"] += time.perf_counter() - t0
            return full

        return scale, candidate

    # ---- evaluation ------------------------------------------------------------------------
    def heldout_loss(self, ctx) -> float:
        return evaluation.heldout_loss(self.comm, ctx)

    def evaluate(self, model, loss_fn, data) -> dict:
        return evaluation.evaluate(self.comm, model, loss_fn, data)

    # ---- agreement -------------------------------------------------------------------------
    def agree(self, value: float) -> float:
        """Rank 0's value of a scalar choice (e.g. the Fisher temperature), on every rank."""
        return float(self.comm.broadcast(torch.tensor([float(value)], dtype=torch.float64),
                                         0).item())

    def slowest(self, *seconds: float) -> list:
        """The largest of every rank's values (time budgets re-plan alike on every rank)."""
        return self.comm.max(torch.tensor(seconds, dtype=torch.float64)).tolist()

    def sync(self, model) -> bool:
        """Check every rank holds the same model; broadcast rank 0's when not."""
        return sync_model(self.comm, model)

    def stage_comm(self, since: CommStats) -> dict:
        """Payload bytes per kind of collective since ``since`` (a snapshot)."""
        return dict(self.comm.stats.since(since).bytes)

    # ---- training ----------------------------------------------------------------------------
    def finetune(self, model, loss_fn, data, masks, steps, *, lr=0.01, progress=False):
        return finetune_ddp(self.comm, model, loss_fn, data, masks, steps, lr=lr,
                            progress=progress and self.rank == 0)

    def summary(self) -> dict:
        """``PruneResult.distributed``: the group size, this rank, and its payload bytes."""
        return {"ranks": self.size, "rank": self.rank, "backend": self.comm.backend,
                "comm": self.comm.stats.as_dict()}

