"""Starting real multi-process groups on localhost for the distributed tests.

A worker is called as ``worker(rank, world, port, tmpdir, *args)`` in its own process,
joins the gloo group with :func:`init_gloo` and pickles its results to
``tmpdir/rank{rank}.pkl``; :func:`run_group` starts the ranks and returns those results.
The ranks are forked from a forkserver with torch preloaded (~3 s for the first group,
well under a second after). A hang fails the test: the whole group is killed after
``timeout`` seconds.
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import socket
import time
from datetime import timedelta

import pytest

GROUP_TIMEOUT = 240  # seconds for one whole group (start-up included)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_method() -> str:
    # forkserver with torch preloaded forks ranks in a fraction of a second instead of a
    # fresh interpreter each; a plain fork of this (OpenMP-using) process is not safe.
    if "forkserver" in multiprocessing.get_all_start_methods():
        # torch.func's first vmap(grad) imports torch._dynamo (~800 modules): once, here.
        multiprocessing.set_forkserver_preload(["torch", "torch.distributed", "torch.func",
                                                "torch._dynamo", "chita_ext"])
        return "forkserver"
    return "spawn"


def init_gloo(rank: int, world: int, port: int, timeout_s: int = 60) -> None:
    """Join the localhost gloo group (one torch thread: the ranks share a few cores)."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=timeout_s))


def save_rank_results(tmpdir, rank: int, results) -> None:
    with open(os.path.join(str(tmpdir), f"rank{rank}.pkl"), "wb") as fh:
        pickle.dump(results, fh)


def run_group(worker, world: int, tmpdir, *args, timeout: float = GROUP_TIMEOUT) -> list:
    """Runs ``worker`` on ``world`` local ranks; returns their result objects in rank order."""
    import torch.multiprocessing as tmp

    ctx = tmp.start_processes(worker, args=(world, free_port(), str(tmpdir), *args),
                              nprocs=world, join=False, start_method=start_method())
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=max(0.1, deadline - time.monotonic())):
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                if proc.is_alive():
                    proc.kill()
            pytest.fail(f"the {world}-rank group did not finish in {timeout} s (a hang)")
    out = []
    for r in range(world):
        with open(os.path.join(str(tmpdir), f"rank{r}.pkl"), "rb") as fh:
            out.append(pickle.load(fh))
    return out
