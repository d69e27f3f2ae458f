"""Running under torchrun: joining the process group, and writing outputs on rank 0 only."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

from .comm import Comm

_JOINED = False  # whether join_torchrun initialised the group (and leave() destroys it)


def torchrun_world_size() -> int:
    """WORLD_SIZE as torchrun (or any launcher using its variables) set it; 1 without one."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def join_torchrun(backend: str = "gloo") -> bool:
    """Initialise the default process group from torchrun's environment (RANK, WORLD_SIZE,
    MASTER_ADDR, MASTER_PORT) when there is more than one rank and no group yet.

    Returns True when a group of two or more ranks is initialised afterwards.
    """
    global _JOINED
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if torchrun_world_size() <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed; "
                           "install a torch build with distributed support")
    dist.init_process_group(backend)
    _JOINED = True
    return True


def leave() -> None:
    """Destroy the process group if :func:`join_torchrun` created it."""
    global _JOINED
    if _JOINED and dist.is_initialized():
        dist.destroy_process_group()
    _JOINED = False


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def on_rank0(write, result=None, group=None, rank_hint: int = 0):
    """Run ``write()`` on rank 0 only and wait for it on every rank.

    With an initialised group of two or more ranks, rank 0 runs it, then one all-reduce
    tells every rank whether it succeeded: rank 0 re-raises its error, the other ranks
    raise an OSError naming rank 0, so that no rank waits forever. Without one (e.g. the
    group was destroyed since), ``write()`` runs only where ``rank_hint`` is 0. Returns
    ``write()``'s value where it ran and ``result`` elsewhere.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) < 2:
        return write() if rank_hint == 0 else result
    comm = Comm(group)
    out, error = result, None
    if comm.rank == 0:
        try:
            out = write()
        except Exception as exc:  # noqa: BLE001 - re-raised below, after the others know
            error = exc
    failed = comm.max(torch.tensor([1.0 if error is not None else 0.0],
                                   dtype=torch.float64)).item()
    if error is not None:
        raise error
    if failed:
        raise OSError("rank 0 failed to write the outputs (see its error message)")
    return out
