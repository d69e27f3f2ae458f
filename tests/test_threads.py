"""Thread counts: affinity, cgroup quotas (fake files), environment variables, capping."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import chita_ext
from chita_ext import _threads


def _cgroup_tree(tmp_path, *, cgroup: str, mountinfo: str, files: dict):
    """Fake /proc/self/cgroup, /proc/self/mountinfo and cgroup files under tmp_path."""
    (tmp_path / "cgroup").write_text(cgroup)
    (tmp_path / "mountinfo").write_text(mountinfo)
    for rel, text in files.items():
        f = tmp_path / "root" / rel.lstrip("/")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return str(tmp_path / "cgroup"), str(tmp_path / "mountinfo"), str(tmp_path / "root")


V2_MOUNT = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
V1_MOUNT = ("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n"
            "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
            "33 31 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n")


def test_cgroup_v2_quota_and_the_smallest_ancestor(tmp_path):
    paths = _cgroup_tree(tmp_path, cgroup="0::/jobs/run1\n", mountinfo=V2_MOUNT, files={
        "/sys/fs/cgroup/cpu.max": "max 100000\n",
        "/sys/fs/cgroup/jobs/cpu.max": "250000 100000\n",        # 2.5 CPUs for all jobs
        "/sys/fs/cgroup/jobs/run1/cpu.max": "max 100000\n"})     # no limit of its own
    assert _threads.cgroup_cpu_quota(*paths) == pytest.approx(2.5)
    (tmp_path / "root/sys/fs/cgroup/jobs/run1/cpu.max").write_text("150000 100000\n")
    assert _threads.cgroup_cpu_quota(*paths) == pytest.approx(1.5)


def test_cgroup_v2_without_limit_or_files(tmp_path):
    paths = _cgroup_tree(tmp_path, cgroup="0::/\n", mountinfo=V2_MOUNT,
                         files={"/sys/fs/cgroup/cpu.max": "max 100000\n"})
    assert _threads.cgroup_cpu_quota(*paths) == 0.0
    assert _threads.cgroup_cpu_quota(str(tmp_path / "none"), str(tmp_path / "none")) == 0.0
    (tmp_path / "g").mkdir()
    garbage = _cgroup_tree(tmp_path / "g", cgroup="garbage\n::\n", mountinfo="x y z\n", files={})
    assert _threads.cgroup_cpu_quota(*garbage) == 0.0


def test_cgroup_v1_quota(tmp_path):
    files = {"/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "300000\n",
             "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
             "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
             "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n"}
    paths = _cgroup_tree(tmp_path, cgroup="4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n",
                         mountinfo=V1_MOUNT, files=files)
    assert _threads.cgroup_cpu_quota(*paths) == pytest.approx(3.0)


def test_cgroup_v1_container_sees_only_its_subtree(tmp_path):
    # Inside a container the mount's root is the container's own cgroup.
    mountinfo = ("32 31 0:29 /docker/abc /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup "
                 "rw,cpu\n")
    paths = _cgroup_tree(tmp_path, cgroup="3:cpu:/docker/abc\n", mountinfo=mountinfo, files={
        "/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "50000\n",
        "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"})
    assert _threads.cgroup_cpu_quota(*paths) == pytest.approx(0.5)


def test_hybrid_v1_and_v2_take_the_smaller(tmp_path):
    mountinfo = V1_MOUNT + "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
    paths = _cgroup_tree(tmp_path, cgroup="3:cpu,cpuacct:/a\n0::/a\n", mountinfo=mountinfo, files={
        "/sys/fs/cgroup/cpu,cpuacct/a/cpu.cfs_quota_us": "400000\n",
        "/sys/fs/cgroup/cpu,cpuacct/a/cpu.cfs_period_us": "100000\n",
        "/sys/fs/cgroup/unified/a/cpu.max": "200000 100000\n"})
    assert _threads.cgroup_cpu_quota(*paths) == pytest.approx(2.0)


def test_parse_thread_count():
    parse = chita_ext._core.threads.parse_thread_count
    assert [parse(s) for s in ("4", " 2 ", "4,2", "0", "-1", "x", "", "3x")] == [4, 2, 4, 0, 0, 0, 0, 0]


def test_environment_and_capping(monkeypatch):
    cpus = _threads.available_cpus()
    assert 1 <= cpus <= len(os.sched_getaffinity(0))
    monkeypatch.delenv("CHITA_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert _threads.default_threads() == cpus
    assert _threads.threads_source() in ("cpu affinity", "cgroup cpu quota")
    assert _threads.resolve_threads(10_000) == cpus
    assert _threads.resolve_threads(1) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert (_threads.default_threads(), _threads.threads_source()) == (1, "OMP_NUM_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "9999")
    assert _threads.default_threads() == cpus
    monkeypatch.setenv("CHITA_NUM_THREADS", "1")  # ours first
    assert (_threads.default_threads(), _threads.threads_source()) == (1, "CHITA_NUM_THREADS")
    info = chita_ext.build_info()
    assert (info["threads"], info["threads_source"]) == (1, "CHITA_NUM_THREADS")
    assert info["available_cpus"] == cpus
    monkeypatch.setenv("CHITA_NUM_THREADS", "garbage")  # ignored: OMP_NUM_THREADS applies
    assert _threads.threads_source() == "OMP_NUM_THREADS"


def test_affinity_mask_is_honoured():
    """A child pinned to one CPU defaults to one thread."""
    code = ("import os, json; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
            "import chita_ext; from chita_ext import _threads as t; "
            "print(json.dumps([t.available_cpus(), t.default_threads(), t.resolve_threads(64), "
            "chita_ext.build_info()['threads']]))")
    env = {k: v for k, v in os.environ.items() if k not in ("CHITA_NUM_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout
    assert json.loads(out) == [1, 1, 1, 1]


def test_huge_thread_count_is_capped_not_an_error():
    rng = np.random.default_rng(0)
    A = np.asfortranarray(rng.standard_normal((50, 200)).astype(np.float32))
    w_bar = rng.standard_normal(200).astype(np.float32)
    a = chita_ext.solve(A, w_bar, 20, lam=0.1, method="iht", threads=10_000)
    b = chita_ext.solve(A, w_bar, 20, lam=0.1, method="iht", threads=1)
    np.testing.assert_array_equal(a.w, b.w)


@pytest.mark.parametrize("env,expected", [({}, "PASSIVE"), ({"OMP_WAIT_POLICY": "active"}, "active"),
                                          ({"GOMP_SPINCOUNT": "1000"}, None)])
def test_cli_asks_torch_openmp_for_passive_waiting(env, expected):
    """chita-prune sets OMP_WAIT_POLICY=PASSIVE for torch's libgomp, never over the user's."""
    code = ("import os, sys; from chita_ext import cli; cli._passive_torch_openmp(); "
            "assert 'torch' not in sys.modules; print(os.environ.get('OMP_WAIT_POLICY'))")
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**base, **env}, check=True).stdout.strip()
    assert out == str(expected)


def test_load_aware_threads_reads_the_running_count(tmp_path, monkeypatch):
    """other_runnable: the running count of /proc/loadavg less the reader (median of the
    samples); load_aware_threads gives way to other jobs unless the user set a count."""
    from chita_ext import _threads
    f = tmp_path / "loadavg"
    f.write_text("3.10 2.00 1.50 4/812 12345\n")
    tasks = tmp_path / "task"
    for tid, state in ((1, "R"), (2, "S"), (3, "R")):  # two of ours running, the reader too
        (tasks / str(tid)).mkdir(parents=True)
        (tasks / str(tid) / "stat").write_text(f"{tid} (py thon) {state} 1 2 3\n")
    assert _threads.other_runnable(loadavg=str(f), task_dir=str(tasks)) == 2
    assert _threads.other_runnable(samples=3, gap=0.0, loadavg=str(f), task_dir=str(tasks)) == 2
    assert _threads._own_running(str(tasks)) == 2
    assert _threads._own_running() >= 1  # this very process, reading
    assert _threads.other_runnable(loadavg=str(tmp_path / "missing")) == 0
    f.write_text("garbage\n")
    assert _threads.other_runnable(loadavg=str(f)) == 0
    monkeypatch.delenv("CHITA_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cpus = _threads.available_cpus()
    monkeypatch.setattr("os.cpu_count", lambda: cpus)  # a process that may use every CPU
    monkeypatch.setattr(_threads, "other_runnable", lambda samples=1: 0)
    assert _threads.load_aware_threads() == _threads.default_threads()
    monkeypatch.setattr(_threads, "other_runnable", lambda samples=1: 10 * cpus)
    assert _threads.load_aware_threads() == 1
    monkeypatch.setenv("CHITA_NUM_THREADS", str(cpus))
    assert _threads.load_aware_threads() == cpus  # the user's count is kept
