"""Held-out losses and metrics shared over the ranks, equal to the single-process values.

Every rank holds the same model and iterates the same samples; rank r runs the forward
passes of batches r, r + R, r + 2R, ... only. The per-batch sums are then combined on every
rank in batch order, exactly as :func:`chita_ext.stage.heldout_loss` and
:func:`chita_ext.finetuning.evaluate` add them up, so (for the same weights) the result is
the single-process value to the last bit, and the same on every rank.
"""
from __future__ import annotations

import math

import torch

from ..finetuning import metrics_from_sums
from .comm import Comm


@torch.no_grad()
def heldout_loss(comm: Comm, ctx) -> float:
    """:func:`chita_ext.stage.heldout_loss` with the batches shared over the ranks.

    Collective: one all-reduce of ``ceil(heldout / heldout_batch)`` doubles.
    """
    model = ctx.model
    was = model.training
    model.eval()
    x, y = ctx.held
    dev = next(model.parameters()).device
    starts = list(range(0, len(x), ctx.heldout_batch))
    sums = torch.zeros(len(starts), dtype=torch.float64)
    try:
        for j, a in enumerate(starts):
            if j % comm.size == comm.rank:
                xb = x[a:a + ctx.heldout_batch].to(dev)
                yb = y[a:a + ctx.heldout_batch].to(dev)
                sums[j] = float(ctx.loss_fn(model(xb), yb)) * len(xb)
    finally:
        model.train(was)
    total = 0.0
    for v in comm.sum(sums, "evaluation").tolist():  # in batch order, as single-process
        total += v
    loss = total / max(1, len(x))
    return loss if math.isfinite(loss) else float("inf")


@torch.no_grad()
def evaluate(comm: Comm, model, loss_fn, data) -> dict:
    """:func:`chita_ext.finetuning.evaluate` (loss, accuracy) with the batches shared.

    Collective: every rank iterates ``data`` (the same batches in the same order) and
    evaluates its share; one ``all_gather_object`` of the per-batch sums.
    """
    was = model.training
    model.eval()
    mine = {}
    try:
        for j, (x, y) in enumerate(data):
            if j % comm.size != comm.rank:
                continue
            out = model(x)
            acc = out.dim() == 2 and y.dim() == 1 and not y.is_floating_point()
            mine[j] = (float(loss_fn(out, y)) * len(x), int((out.argmax(1) == y).sum())
                       if acc else 0, acc, len(x))
    finally:
        model.train(was)
    batches = {}
    for part in comm.gather_objects(mine):
        batches.update(part)
    tot_loss, correct, count, has_acc = 0.0, 0, 0, True
    for j in sorted(batches):
        loss_sum, right, acc, size = batches[j]
        tot_loss += loss_sum
        has_acc = has_acc and acc
        correct += right
        count += size
    return metrics_from_sums(tot_loss, correct, count, has_acc)
