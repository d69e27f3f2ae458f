"""Keeping every rank's model identical: a digest of the state, rank 0's state on mismatch."""
from __future__ import annotations

import hashlib

import torch

from .comm import Comm


def state_digest(model: torch.nn.Module) -> int:
    """A 63-bit digest of every tensor of ``model.state_dict()`` (names, shapes, bytes)."""
    h = hashlib.blake2b(digest_size=8)
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return int.from_bytes(h.digest(), "little") & ((1 << 63) - 1)


@torch.no_grad()
def sync_model(comm: Comm, model: torch.nn.Module) -> bool:
    """Make every rank's parameters and buffers bitwise those of rank 0.

    Collective: an all-reduce of R digests; only when they differ, a broadcast of every
    tensor of the state from rank 0. Returns whether the ranks differed.
    """
    digests = comm.gather_ints(state_digest(model), "sync")
    if all(d == digests[0] for d in digests):
        return False
    for t in model.state_dict().values():
        got = comm.broadcast(t.detach(), 0)
        if got is not t:
            t.copy_(got)
    return True
