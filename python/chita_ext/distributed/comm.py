"""Thin wrappers over torch.distributed collectives that count the bytes they move.

Every collective the distributed solvers and the sharded gradient collection make goes
through :class:`Comm`, so that :class:`CommStats` can report, per rank, how many payload
bytes were handed to collectives (the size of the tensor each call reduces, broadcasts or
exchanges on this rank). That is the figure `bench/bench_distributed.py` reports; the
bytes on the wire depend on the backend's algorithm (a ring all-reduce sends about
``2 (R - 1) / R`` times its payload per rank).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


@dataclass
class CommStats:
    """Payload bytes and calls per kind of collective, on this rank."""

    bytes: dict = field(default_factory=lambda: defaultdict(int))
    calls: dict = field(default_factory=lambda: defaultdict(int))

    def add(self, kind: str, nbytes: int) -> None:
        self.bytes[kind] += int(nbytes)
        self.calls[kind] += 1

    @property
    def total_bytes(self) -> int:
        return int(sum(self.bytes.values()))

    @property
    def total_calls(self) -> int:
        return int(sum(self.calls.values()))

    def snapshot(self) -> CommStats:
        """A copy of the counts so far (``later.since(snapshot)`` gives what came after)."""
        return CommStats(defaultdict(int, self.bytes), defaultdict(int, self.calls))

    def since(self, earlier: CommStats) -> CommStats:
        """The counts added after ``earlier`` (a snapshot of this object)."""
        kinds = [k for k, c in self.calls.items() if c > earlier.calls.get(k, 0)]
        return CommStats(
            defaultdict(int, {k: self.bytes[k] - earlier.bytes.get(k, 0) for k in kinds}),
            defaultdict(int, {k: self.calls[k] - earlier.calls.get(k, 0) for k in kinds}))

    def merge(self, counts: dict) -> None:
        """Add the counts of another rank-local record (``CommStats.as_dict()`` form)."""
        for kind, nbytes in counts.get("bytes", {}).items():
            self.bytes[kind] += int(nbytes)
            self.calls[kind] += int(counts.get("calls", {}).get(kind, 0))

    def as_dict(self) -> dict:
        """Plain dict: ``{"bytes": {...}, "calls": {...}, "total_bytes", "total_calls"}``."""
        return {"bytes": dict(self.bytes), "calls": dict(self.calls),
                "total_bytes": self.total_bytes, "total_calls": self.total_calls}


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class Comm:
    """The process group a distributed call runs on, with counted collectives.

    Parameters
    ----------
    group : torch.distributed.ProcessGroup, optional
        Defaults to the world group. The group must be initialised
        (``torch.distributed.init_process_group``) before any distributed call.
    stats : CommStats, optional
        Where to count bytes (a fresh one by default).
    """

    def __init__(self, group=None, stats: CommStats | None = None):
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "chita_ext.distributed needs an initialised process group; call "
                "torch.distributed.init_process_group('gloo' or 'nccl') first (torchrun "
                "sets the environment for it)")
        self.group = group
        self.rank = dist.get_rank(group)
        self.size = dist.get_world_size(group)
        self.backend = str(dist.get_backend(group))
        # NCCL moves CUDA tensors only; gloo moves CPU tensors (and stages CUDA ones).
        self.device = (torch.device("cuda", torch.cuda.current_device())
                       if self.backend == "nccl" else torch.device("cpu"))
        self.stats = stats if stats is not None else CommStats()

    # ---- helpers --------------------------------------------------------------------
    def global_rank(self, group_rank: int) -> int:
        """The world rank of this group's rank ``group_rank`` (for src= arguments)."""
        return group_rank if self.group is None else dist.get_global_rank(self.group, group_rank)

    def _staged(self, t: torch.Tensor):
        """t on the backend's device (a copy only when it is elsewhere)."""
        return t if t.device == self.device else t.to(self.device)

    def _run(self, kind: str, t: torch.Tensor, call) -> torch.Tensor:
        s = self._staged(t.contiguous())
        self.stats.add(kind, _nbytes(s))
        call(s)
        return s if s.device == t.device else s.to(t.device)

    # ---- collectives ------------------------------------------------------------------
    def sum(self, t: torch.Tensor, kind: str = "all_reduce") -> torch.Tensor:
        """All-reduce SUM; returns the reduced tensor (t itself when no staging was needed).
        ``kind`` names the call in the stats (e.g. the top-k's histograms)."""
        return self._run(kind, t, lambda s: dist.all_reduce(s, dist.ReduceOp.SUM,
                                                            group=self.group))

    def max(self, t: torch.Tensor) -> torch.Tensor:
        """All-reduce MAX."""
        return self._run("all_reduce", t, lambda s: dist.all_reduce(s, dist.ReduceOp.MAX,
                                                                    group=self.group))

    def min(self, t: torch.Tensor) -> torch.Tensor:
        """All-reduce MIN."""
        return self._run("all_reduce", t, lambda s: dist.all_reduce(s, dist.ReduceOp.MIN,
                                                                    group=self.group))

    def broadcast(self, t: torch.Tensor, src: int) -> torch.Tensor:
        """Broadcast from this group's rank ``src``."""
        return self._run("broadcast", t, lambda s: dist.broadcast(
            s, src=self.global_rank(src), group=self.group))

    def all_to_all(self, send: torch.Tensor, send_counts, recv_counts) -> torch.Tensor:
        """``all_to_all_single`` of a flat tensor: ``send_counts[s]`` elements to rank s,
        ``recv_counts[q]`` elements from rank q, in rank order."""
        send = self._staged(send.contiguous())
        recv = torch.empty(int(sum(recv_counts)), dtype=send.dtype, device=send.device)
        self.stats.add("all_to_all", _nbytes(send))
        dist.all_to_all_single(recv, send, [int(c) for c in recv_counts],
                               [int(c) for c in send_counts], group=self.group)
        return recv

    def all_gather(self, t: torch.Tensor, sizes=None) -> torch.Tensor:
        """Every rank's 1-D tensor (lengths may differ), concatenated in rank order.

        ``sizes`` (every rank's length) saves the all-reduce that otherwise finds them. Each
        rank's piece is padded to the longest, so the payload is ``max(sizes)`` elements.
        """
        sizes = self.gather_ints(t.numel(), "all_gather") if sizes is None else list(sizes)
        width = max(int(s) for s in sizes)
        pad = torch.zeros(width, dtype=t.dtype, device=self.device)
        pad[:t.numel()] = self._staged(t.reshape(-1))
        parts = [torch.empty_like(pad) for _ in range(self.size)]
        self.stats.add("all_gather", _nbytes(pad))
        dist.all_gather(parts, pad, group=self.group)
        out = torch.cat([piece[:int(s)] for piece, s in zip(parts, sizes)])
        return out if out.device == t.device else out.to(t.device)

    def sum_scalars(self, *values: float) -> list:
        """All-reduce SUM of a few float64 scalars in one call."""
        t = self.sum(torch.tensor(values, dtype=torch.float64))
        return [float(v) for v in t.tolist()]

    def max_scalar(self, value: float) -> float:
        return float(self.max(torch.tensor([value], dtype=torch.float64)).item())

    def min_scalar(self, value: float) -> float:
        return float(self.min(torch.tensor([value], dtype=torch.float64)).item())

    def gather_ints(self, value: int, kind: str = "all_reduce") -> list:
        """Every rank's ``value`` (one int64 each), in rank order: an all-reduce of R ints."""
        t = torch.zeros(self.size, dtype=torch.int64)
        t[self.rank] = int(value)
        return [int(v) for v in self.sum(t, kind).tolist()]

    def gather_objects(self, obj) -> list:
        """Every rank's picklable ``obj`` in rank order (set-up checks only, never in loops)."""
        out = [None] * self.size
        dist.all_gather_object(out, obj, group=self.group)
        self.stats.add("all_gather_object", 0)
        return out
