"""Training-side helpers: masked fine-tuning, BatchNorm recalibration, evaluation."""
from __future__ import annotations

import torch
from torch import nn

from .gradients import SampleStream
from .params import apply_masks
from .progress import phase


def _batches(data):
    """Cycle over ``data`` forever (a shuffled DataLoader reshuffles each pass)."""
    while True:
        empty = True
        for batch in data:
            empty = False
            yield batch
        if empty:
            raise ValueError("data yielded no batches")


def finetune(model: nn.Module, loss_fn, data, masks: dict, steps: int, *, lr: float = 0.01,
             momentum: float = 0.9, weight_decay: float = 0.0, optimizer=None,
             progress: bool = False) -> list:
    """SGD steps that keep the pruned weights exactly zero.

    After every optimiser step each masked parameter is multiplied by its mask, so a
    pruned weight (mask False) is 0 after every step, whatever momentum or weight decay do.

    Parameters
    ----------
    model : torch.nn.Module
    loss_fn : callable
        Batch-mean loss ``loss_fn(outputs, targets)``.
    data : iterable of (inputs, targets)
        Cycled through as many times as ``steps`` needs.
    masks : dict
        ``{param name: bool tensor}``, e.g. ``PruneResult.masks``.
    steps : int
        Optimiser steps.
    lr, momentum, weight_decay : float
        SGD settings (ignored when ``optimizer`` is given).
    optimizer : torch.optim.Optimizer, optional
        Use this optimiser instead of a fresh SGD.

    Returns
    -------
    list of float
        The training loss of every step.
    """
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps={steps!r} must be an int >= 0")
    apply_masks(model, masks)
    opt = optimizer or torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                                       lr=lr, momentum=momentum, weight_decay=weight_decay)
    was_training = model.training
    model.train()
    losses, it = [], _batches(data)
    bar = phase(steps, "fine-tune", unit="step", enabled=progress and steps > 0)
    for _ in range(steps):
        x, y = next(it)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        apply_masks(model, masks)
        losses.append(float(loss.detach()))
        bar.update(1)
    bar.close()
    model.train(was_training)
    return losses


def has_batchnorm(model: nn.Module) -> bool:
    """True when the model has BatchNorm layers with running statistics."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
               for m in model.modules())


@torch.no_grad()
def recalibrate_bn(model: nn.Module, data, n_samples: int = 2048, batch: int = 128,
                   stream: SampleStream | None = None) -> None:
    """Recompute BatchNorm running statistics at the current (pruned) weights.

    Running stats are reset and re-estimated as a cumulative average over ``n_samples``
    training samples in train mode; nothing else changes. No-op without BatchNorm.
    """
    bns = [m for m in model.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return
    stream = stream or SampleStream(data)
    was_training = model.training
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    try:
        for done in range(0, n_samples, batch):
            x, _ = stream.take(min(batch, n_samples - done))
            model(x)
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
        model.train(was_training)


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn, data, max_samples: int | None = None) -> dict:
    """Mean loss and (for class-index targets) accuracy of ``model`` on ``data``, eval mode."""
    was_training = model.training
    model.eval()
    tot_loss, correct, count, has_acc = 0.0, 0, 0, True
    for x, y in data:
        if max_samples is not None and count >= max_samples:
            break
        if max_samples is not None:
            x, y = x[:max_samples - count], y[:max_samples - count]
        out = model(x)
        tot_loss += float(loss_fn(out, y)) * len(x)
        if has_acc and out.dim() == 2 and y.dim() == 1 and not y.is_floating_point():
            correct += int((out.argmax(1) == y).sum())
        else:
            has_acc = False
        count += len(x)
    model.train(was_training)
    return metrics_from_sums(tot_loss, correct, count, has_acc)


def metrics_from_sums(loss_sum: float, correct: int, count: int, has_acc: bool) -> dict:
    """``{"loss", "samples"[, "accuracy"]}`` of an evaluation from its sums."""
    if count == 0:
        raise ValueError("evaluation data yielded no samples")
    res = {"loss": loss_sum / count, "samples": count}
    if has_acc:
        res["accuracy"] = correct / count
    return res
