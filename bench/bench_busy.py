"""Runs on a busy machine: wall and CPU time of the demos and of solves, idle and beside two
multi-threaded background jobs, with default settings, OMP_WAIT_POLICY=passive and one
thread.

Workloads (each run in a fresh child process):
  demo-quick  `chita-prune --quick`
  demo        `chita-prune` (the full MNIST demo; long, and it loads the whole machine)
  iht         solve(method="iht") on a synthetic gradient-like n x p problem (--n, --p)
  auto        solve(method="auto") on the same problem
  tiny        one solve on a 50 x 200 problem (the default method), the first in its process

Background jobs (the "busy" runs), both with default settings: a torch loop of 600 x 600
matmuls (torch's default threads), and a loop of chita_ext.solve(method="iht") calls on a
128 x 100,000 problem. Variants: `default` (OMP_WAIT_POLICY and GOMP_SPINCOUNT unset),
`passive` (OMP_WAIT_POLICY=passive), `threads1` (--threads 1 / threads=1), and for the
demos `gomp-spin` (GOMP_SPINCOUNT=300000: libgomp's own default spinning, i.e. what the
CLI did before it set OMP_WAIT_POLICY=PASSIVE for torch).

Wall is the workload's time; CPU is user + sys: for the demos, of the child process (from
os.wait4, so interpreter start-up and imports included); for the solves, of the solve call
alone (getrusage around it, all threads). The "done when" checks of issue 13 are printed
as ratios: busy default wall / best of busy passive and threads1 (<= 1.2), busy default
CPU / idle default CPU (<= 1.3), and the tiny solve's busy wall (< 0.1 s).

    python bench/bench_busy.py [--quick] [--workloads demo-quick,iht,auto,tiny]
        [--variants default,passive,threads1] [--loads idle,busy] [--repeats 1]
        [--n 128] [--p 1000000] [--out bench/results/busy.md]

--quick: every workload but the full demo.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ALL_WORKLOADS = ("demo-quick", "demo", "iht", "auto", "tiny")
CLI_WORKLOADS = ("demo-quick", "demo")
ALL_VARIANTS = ("default", "passive", "threads1", "gomp-spin")
THREAD_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "CHITA_NUM_THREADS",
               "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


# ---- children ------------------------------------------------------------------------------

def make_problem(n: int, p: int, seed: int = 0):
    """Gradient-like A (log-normal column scales), column-major float32, and w_bar."""
    import numpy as np
    rng = np.random.default_rng(seed)
    A = np.asfortranarray(rng.standard_normal((n, p), dtype=np.float32)
                          * np.exp(0.5 * rng.standard_normal(p)).astype(np.float32))
    w_bar = rng.standard_normal(p).astype(np.float32)
    return A, w_bar


def child_solve(args) -> None:
    """One timed solve; prints {"wall": s, "cpu": s} of the solve call alone."""
    import resource

    import numpy as np

    import chita_ext
    A, w_bar = make_problem(args.n, args.p)
    k = max(1, args.p // 10)
    lam = 1e-3 * float(np.einsum("ij,ij->", A, A, dtype=np.float64)) / args.p
    kw = {} if args.method == "default" else {"method": args.method}
    if args.threads:
        kw["threads"] = args.threads
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    res = chita_ext.solve(A, w_bar, k, lam=lam, **kw)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    print(json.dumps({"wall": wall, "cpu": cpu, "objective": res.objective,
                      "method": res.method, "threads": chita_ext.build_info()["threads"]}))


def child_background(kind: str) -> None:
    """Loops until terminated: torch matmuls, or chita_ext iht solves."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if kind == "torch":
        import torch
        a = torch.randn(600, 600)
        while True:
            a = torch.tanh(a @ a)  # tanh keeps the values bounded
    import chita_ext
    A, w_bar = make_problem(128, 100_000, seed=1)
    while True:
        chita_ext.solve(A, w_bar, 10_000, lam=1.0, method="iht")


# ---- the parent ----------------------------------------------------------------------------

def clean_env() -> dict:
    """The environment with every thread setting removed (the `default` variant)."""
    return {k: v for k, v in os.environ.items() if k not in THREAD_VARS}


def start_background() -> list:
    procs = [subprocess.Popen([sys.executable, __file__, "--child", f"bg-{kind}"],
                              env=clean_env(), stdout=subprocess.DEVNULL)
             for kind in ("torch", "chita")]
    time.sleep(8)  # imports and problem set-up, so that both are computing
    for p in procs:
        if p.poll() is not None:
            raise RuntimeError(f"background job {p.args} exited with {p.returncode}")
    return procs


def stop_background(procs: list) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_child(cmd: list, env: dict) -> tuple[float, float, str]:
    """(wall s, user + sys CPU s of the child, its stdout), the CPU from os.wait4."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # reaps it: Popen must not wait again
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.read()[-2000:]}")
        return wall, usage.ru_utime + usage.ru_stime, out.read()


def run_workload(workload: str, variant: str, args) -> dict:
    env = clean_env()
    if variant == "passive":
        env["OMP_WAIT_POLICY"] = "passive"
    if variant == "gomp-spin":
        env["GOMP_SPINCOUNT"] = "300000"
    threads = 1 if variant == "threads1" else None
    if workload in CLI_WORKLOADS:
        with tempfile.TemporaryDirectory() as out:
            cmd = [sys.executable, "-m", "chita_ext.cli", "--no-progress", "--out", out]
            cmd += ["--quick"] if workload == "demo-quick" else []
            cmd += ["--threads", "1"] if threads else []
            wall, cpu, _ = run_child(cmd, env)
        return {"wall": wall, "cpu": cpu}
    n, p = (50, 200) if workload == "tiny" else (args.n, args.p)
    method = {"tiny": "default"}.get(workload, workload)
    cmd = [sys.executable, __file__, "--child", "solve", "--n", str(n), "--p", str(p),
           "--method", method] + (["--threads", "1"] if threads else [])
    _, _, out = run_child(cmd, env)
    return json.loads(out.strip().splitlines()[-1])


def run_all(args) -> dict:
    """{(workload, variant, load): best-of-repeats result}."""
    results = {}
    for load in args.loads:
        bg = start_background() if load == "busy" else []
        try:
            for w in args.workloads:
                for v in args.variants:
                    if v == "gomp-spin" and w not in CLI_WORKLOADS:
                        continue
                    runs = [run_workload(w, v, args) for _ in range(args.repeats)]
                    best = min(runs, key=lambda r: r["wall"])
                    results[(w, v, load)] = best
                    print(f"{w:10s} {v:9s} {load:4s} wall {best['wall']:8.3f} s  "
                          f"cpu {best['cpu']:8.2f} s", flush=True)
        finally:
            stop_background(bg)
    return results


def report(results: dict, args) -> str:
    sys.path.insert(0, str(HERE))
    from machine import describe
    import chita_ext
    lines = [f"# Busy machine: wall and CPU time (bench/bench_busy.py)", "",
             f"Machine: {describe()}; chita_ext threads={chita_ext.build_info()['threads']} "
             f"({chita_ext.build_info()['threads_source']})",
             f"Command: `python bench/bench_busy.py --workloads {','.join(args.workloads)} "
             f"--variants {','.join(args.variants)} --loads {','.join(args.loads)} "
             f"--repeats {args.repeats} --n {args.n} --p {args.p}` (best of {args.repeats})",
             "Busy = beside a torch loop of 600x600 matmuls and a loop of chita_ext iht solves "
             "on 128 x 100,000.", "",
             "| workload | variant | idle wall s | idle CPU s | busy wall s | busy CPU s |",
             "|---|---|---|---|---|---|"]
    fmt = lambda r, key: f"{r[key]:.3f}" if r else "-"
    for w in args.workloads:
        for v in args.variants:
            idle, busy = results.get((w, v, "idle")), results.get((w, v, "busy"))
            if idle or busy:
                lines.append(f"| {w} | {v} | {fmt(idle, 'wall')} | {fmt(idle, 'cpu')} | "
                             f"{fmt(busy, 'wall')} | {fmt(busy, 'cpu')} |")
    lines += ["", "Done-when checks (issue 13):", ""]
    for w in args.workloads:
        d = results.get((w, "default", "busy"))
        others = [results.get((w, v, "busy")) for v in ("passive", "threads1")]
        others = [o for o in others if o]
        if d and others:
            best = min(o["wall"] for o in others)
            lines.append(f"- {w}: busy default wall / best of passive, threads1 = "
                         f"{d['wall'] / best:.2f} (<= 1.2)")
        di = results.get((w, "default", "idle"))
        if d and di:
            lines.append(f"- {w}: busy / idle CPU, default = {d['cpu'] / di['cpu']:.2f} (<= 1.3)")
    tiny = results.get(("tiny", "default", "busy"))
    if tiny:
        lines.append(f"- tiny (50 x 200) solve, busy, default: {tiny['wall']:.4f} s (< 0.1 s)")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--method", default="iht", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="all workloads but the full demo")
    ap.add_argument("--workloads", default=None, help=f"comma list of {','.join(ALL_WORKLOADS)}")
    ap.add_argument("--variants", default="default,passive,threads1",
                    help=f"comma list of {','.join(ALL_VARIANTS)}")
    ap.add_argument("--loads", default="idle,busy", help="idle, busy or both")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each; the best is reported")
    ap.add_argument("--n", type=int, default=128, help="rows of the iht / auto problem")
    ap.add_argument("--p", type=int, default=1_000_000, help="columns of the iht / auto problem")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "busy.md")
    args = ap.parse_args()
    if args.child == "solve":
        return child_solve(args)
    if args.child in ("bg-torch", "bg-chita"):
        return child_background(args.child[3:])
    if args.workloads:
        args.workloads = args.workloads.split(",")
    else:
        args.workloads = [w for w in ALL_WORKLOADS if not (args.quick and w == "demo")]
    args.variants, args.loads = args.variants.split(","), args.loads.split(",")
    for name, got, allowed in (("workload", args.workloads, ALL_WORKLOADS),
                               ("variant", args.variants, ALL_VARIANTS),
                               ("load", args.loads, ("idle", "busy"))):
        bad = [g for g in got if g not in allowed]
        if bad:
            ap.error(f"unknown {name} {bad}; choose from {', '.join(allowed)}")
    text = report(run_all(args), args)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
