"""Masked fine-tuning with DistributedDataParallel (gradual pruning over the ranks).

Every rank iterates the same ``data`` stream and trains on its share of the batches: rank r
takes batches r, r + R, r + 2R, ... of the stream (cycled, so a short stream still gives
every rank batches). Each optimiser step therefore averages the gradients of R batches,
one per rank, by DDP's all-reduce: one step on the union of those R batches (exactly so for
a batch-mean loss and equal batch sizes). Pruned weights stay zero on every rank.
"""
from __future__ import annotations

import torch

from ..finetuning import finetune
from .comm import Comm


class RankBatches:
    """The batches ``rank, rank + size, ...`` of ``data``, cycled forever."""

    def __init__(self, data, rank: int, size: int):
        self.data, self.rank, self.size = data, int(rank), int(size)

    def __iter__(self):
        i = 0
        while True:
            empty = True
            for batch in self.data:
                empty = False
                if i % self.size == self.rank:
                    yield batch
                i += 1
            if empty:
                raise ValueError("data yielded no batches")


def finetune_ddp(comm: Comm, model: torch.nn.Module, loss_fn, data, masks: dict, steps: int,
                 *, lr: float = 0.01, progress: bool = False, **kwargs) -> list:
    """:func:`chita_ext.finetune` under DDP: each rank trains on its share of ``data``.

    Collective. ``model`` must be identical on every rank (DDP broadcasts rank 0's state
    when it wraps it). After the last step every rank's BatchNorm running statistics are
    replaced by rank 0's (what DDP would broadcast before the next forward pass), so the
    models stay bitwise identical.

    Returns
    -------
    list of float
        This rank's training loss of every step.
    """
    from torch.nn.parallel import DistributedDataParallel

    dev = next(model.parameters()).device
    ddp = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None,
                                  process_group=comm.group)
    losses = finetune(ddp, loss_fn, RankBatches(data, comm.rank, comm.size),
                      {f"module.{name}": m for name, m in masks.items()}, steps, lr=lr,
                      progress=progress, **kwargs)
    with torch.no_grad():
        for buf in model.buffers():
            got = comm.broadcast(buf, 0)
            if got is not buf:
                buf.copy_(got)
    return losses
