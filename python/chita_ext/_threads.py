"""CPU thread counts: what the solver kernels use, and a helper to size other pools.

The kernels run on chita_ext's own thread pool (no OpenMP runtime). With ``threads=None``
they use :func:`default_threads`; an explicit ``threads=`` is capped at
:func:`available_cpus` (more threads than CPUs only make a busy machine slower).
"""
from __future__ import annotations

from . import _core


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask (``taskset``, ``os.sched_setaffinity``),
    capped by its cgroup's CPU quota (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``;
    containers and ``docker --cpus``), rounded up. At least 1."""
    return int(_core.threads.available_cpus())


def default_threads() -> int:
    """The threads a solve uses when ``threads=None``: ``CHITA_NUM_THREADS`` if set, else
    ``OMP_NUM_THREADS``, else :func:`available_cpus`; never more than available_cpus().
    The environment is read at every call."""
    return int(_core.threads.default_threads()[0])


def threads_source() -> str:
    """Where :func:`default_threads` came from: ``"CHITA_NUM_THREADS"``,
    ``"OMP_NUM_THREADS"``, ``"cgroup cpu quota"`` or ``"cpu affinity"``."""
    return str(_core.threads.default_threads()[1])


def resolve_threads(threads: int | None) -> int:
    """The count a call with ``threads=`` actually uses: None -> default_threads(), else
    min(threads, available_cpus())."""
    return int(_core.threads.resolve_threads(0 if threads is None else int(threads)))


def cgroup_cpu_quota(proc_cgroup: str = "/proc/self/cgroup",
                     mountinfo: str = "/proc/self/mountinfo", root: str = "") -> float:
    """This process's cgroup CPU quota in CPUs (e.g. 1.5), 0.0 when there is none. The
    paths are parameters for testing: ``root`` is prepended to the mount points."""
    return float(_core.threads.cgroup_cpu_quota(proc_cgroup, mountinfo, root))


def _own_running(task_dir: str = "/proc/self/task") -> int:
    """This process's threads in state R (running or runnable), the reader included."""
    import os

    n = 0
    try:
        for tid in os.listdir(task_dir):
            try:
                with open(f"{task_dir}/{tid}/stat") as fh:
                    stat = fh.read()
            except OSError:
                continue
            n += stat[stat.rfind(")") + 2:][:1] == "R"
    except OSError:
        return 1
    return max(1, n)


def other_runnable(samples: int = 1, gap: float = 0.002, loadavg: str = "/proc/loadavg",
                   task_dir: str = "/proc/self/task") -> int:
    """Tasks of other processes that are runnable right now, machine-wide: the median over
    ``samples`` reads of the running count in /proc/loadavg less this process's own
    running threads (torch's and ours may still be finishing a parallel region); 0 where
    the file is missing."""
    import time

    counts = []
    for i in range(samples):
        try:
            with open(loadavg) as fh:
                running = int(fh.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return 0
        counts.append(running - _own_running(task_dir))
        if i + 1 < samples:
            time.sleep(gap)
    return max(0, sorted(counts)[len(counts) // 2])


def load_aware_threads(samples: int = 1) -> int:
    """The threads a default call uses on a shared machine: default_threads(), less the
    CPUs other runnable tasks occupy now, at least 1.

    A pool of T threads meets at a barrier every iteration, so one preempted thread stalls
    the others: beside other jobs one thread is faster than two (bench/results/busy.md).
    Only when the user set no thread count (CHITA_NUM_THREADS / OMP_NUM_THREADS) and the
    process may use every CPU of the machine (with an affinity mask or a cgroup quota the
    machine-wide count says nothing about our CPUs).
    """
    import os

    t = default_threads()
    if {"CHITA_NUM_THREADS", "OMP_NUM_THREADS"} & set(os.environ) \
            or available_cpus() != (os.cpu_count() or 1):
        return t
    return max(1, min(t, available_cpus() - other_runnable(samples)))
