"""Column-sharded IHT on torch.distributed: time and bytes communicated per iteration.

For each problem size (n x p, float32, column-major, k = p / 100) and each group size R
(gloo ranks on this machine, one OpenMP thread each), every rank generates its own column
block of the same A (column chunks drawn from fixed seeds, so any R sees the same
matrix), runs ``chita_ext.distributed.solve(method="iht")`` for a fixed number of
iterations (tol = 0), and reports the payload bytes its collectives moved inside the
iteration loop (``info["iteration_comm"]``; set-up and the final backsolve excluded), split
into the top-k's histograms and the rest. The baseline, in the same run, is the
single-process ``chita_ext.solve`` on the whole A with 1 and with R threads; it must find
the same support.

    python bench/bench_distributed.py [--sizes 64x250000,256x250000,64x1000000,256x1000000]
        [--ranks 1,2] [--iters 10] [--radix-bits 8,11,4] [--out bench/results/distributed.md]
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import pickle
import socket
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

CHUNK = 1 << 15  # columns per seeded chunk of A


def columns(n: int, p: int, a: int, b: int, seed: int = 0):
    """Columns [a, b) of the benchmark matrix (float32, column-major) and of w_bar."""
    A = np.empty((b - a, n), dtype=np.float32)  # (columns, n): its .T is column-major
    w = np.empty(b - a, dtype=np.float32)
    for c in range(a // CHUNK, (b - 1) // CHUNK + 1):
        rng = np.random.default_rng([seed, c])
        lo = c * CHUNK
        hi = min(lo + CHUNK, p)
        block = rng.standard_normal((hi - lo, n), dtype=np.float32)
        wb = rng.standard_normal(hi - lo, dtype=np.float32)
        s, e = max(a, lo), min(b, hi)
        A[s - a:e - a] = block[s - lo:e - lo]
        w[s - a:e - a] = wb[s - lo:e - lo]
    return A.T, w


def lam_for(n: int, p: int) -> float:
    return 1e-2 * n  # ~ 1e-2 ||A||_F^2 / p for standard normal entries


def _rank(rank, world, port, configs, iters, out_dir):
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=600))
    import chita_ext.distributed as D
    from chita_ext.distributed.layout import column_range

    results = {}
    for n, p, bits in configs:
        a, b = column_range(p, rank, world)
        A, w = columns(n, p, a, b)
        runs = [D.solve(A, w, p // 100, lam=lam_for(n, p), method="iht", max_iter=iters,
                        tol=0.0, threads=1, radix_bits=bits, check_finite=False)
                for _ in range(2)]  # the faster of two runs: the machine is shared
        res = min(runs, key=lambda r: r.info["iteration_seconds"])
        results[(n, p, bits)] = {
            "iterations": res.iterations, "iteration_seconds": res.info["iteration_seconds"],
            "seconds": res.seconds, "comm": res.info["iteration_comm"],
            "objective": res.objective, "support": res.info["global_support"]}
        del A
    with open(os.path.join(out_dir, f"rank{rank}.pkl"), "wb") as fh:
        pickle.dump(results, fh)
    dist.destroy_process_group()


def run_group(world, configs, iters):
    import torch.multiprocessing as tmp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out_dir = tempfile.mkdtemp()
    multiprocessing.set_forkserver_preload(["torch", "torch.distributed", "chita_ext"])
    tmp.start_processes(_rank, args=(world, port, configs, iters, out_dir), nprocs=world,
                        start_method="forkserver")
    parts = []
    for r in range(world):
        with open(os.path.join(out_dir, f"rank{r}.pkl"), "rb") as fh:
            parts.append(pickle.load(fh))
    return parts


def single_process(n, p, iters, threads):
    import chita_ext

    A, w = columns(n, p, 0, p)
    res = chita_ext.solve(A, w, p // 100, lam=lam_for(n, p), method="iht", max_iter=iters,
                          tol=0.0, threads=threads, check_finite=False)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="64x250000,256x250000,64x1000000,256x1000000")
    ap.add_argument("--ranks", default="1,2")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--radix-bits", default="8,11,4",
                    help="bits per top-k pass; values after the first run at the last size only")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    bits = [int(b) for b in args.radix_bits.split(",")]
    configs = [(n, p, bits[0]) for n, p in sizes] + [(*sizes[-1], b) for b in bits[1:]]
    ranks = [int(r) for r in args.ranks.split(",")]

    load_start = os.getloadavg()[0]
    groups = {R: run_group(R, configs, args.iters) for R in ranks}
    rows, base = [], {}
    for n, p in sizes:
        for threads in sorted({1, max(ranks)}):
            t0 = time.perf_counter()
            res = single_process(n, p, args.iters, threads)
            base[(n, p, threads)] = res
            print(f"single process n={n} p={p} threads={threads}: "
                  f"{res.info['iteration_seconds'] / max(1, res.iterations) * 1e3:.1f} ms/iter "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)
    header = ("| n | p | R | radix bits | ms / iter (dist) | ms / iter (single, 1 thr) | "
              f"ms / iter (single, {max(ranks)} thr) | bytes / iter / rank | n-vector bytes / "
              "iter | = n-vectors / iter (bytes / 8n) | histogram bytes / iter | = histograms / "
              "iter | calls / iter | 4p (one p-vector) | same support |")
    rows.append(header)
    rows.append("|" + "---|" * (header.count("|") - 1))
    for n, p, b in configs:
        single1 = base[(n, p, 1)]
        singleR = base[(n, p, max(ranks))]
        t1 = single1.info["iteration_seconds"] / max(1, single1.iterations) * 1e3
        tR = singleR.info["iteration_seconds"] / max(1, singleR.iterations) * 1e3
        for R in ranks:
            parts = groups[R]
            r0 = parts[0][(n, p, b)]
            it = max(1, r0["iterations"])
            t = max(q[(n, p, b)]["iteration_seconds"] for q in parts) / it * 1e3
            comm = r0["comm"]
            hist = comm["bytes"].get("topk_histogram", 0) / it
            vec = comm["bytes"].get("all_reduce", 0) / it
            support = np.concatenate([q[(n, p, b)]["support"] for q in parts])
            same = np.array_equal(support, single1.support) and \
                abs(r0["objective"] - single1.objective) <= 1e-6 * abs(single1.objective)
            rows.append(f"| {n} | {p:,} | {R} | {b} | {t:.1f} | {t1:.1f} | {tR:.1f} | "
                        f"{comm['total_bytes'] / it:,.0f} | {vec:,.0f} | {vec / (8 * n):.2f} | "
                        f"{hist:,.0f} | {hist / (8 * 2 ** b):.2f} | "
                        f"{comm['total_calls'] / it:.1f} | {4 * p:,} | {'yes' if same else 'NO'} |")
    table = "\n".join(rows)
    load = (f"Load average (1 min) {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at "
            "the end: the machine is shared, so times are indicative only; the bytes are "
            "exact (they do not depend on timing).")
    print(table)
    print(load)
    if args.out:
        sys.path.insert(0, str(Path(__file__).parent))
        from machine import describe

        args.out.write_text(
            "# Column-sharded IHT: time and communication per iteration\n\n"
            f"Machine: {describe()}.\n\nCommand: `python bench/bench_distributed.py "
            f"--sizes {args.sizes} --ranks {args.ranks} --iters {args.iters} "
            f"--radix-bits {args.radix_bits}`\n\n{load}\n\n{table}\n")


if __name__ == "__main__":
    main()
