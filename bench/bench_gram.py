"""The backsolve's Gram matrices from Python: chita_ext.kernels.gram_rows (A_S A_S^T) and
gram_cols (A_S^T A_S) against NumPy's float64 product of the gathered columns (the gather and
the float64 conversion, then ``AS @ AS.T``, which NumPy runs as an OpenBLAS SYRK on all
cores), timed alternately in the same run.

    python bench/bench_gram.py [--n 1000] [--ks 3000,27000] [--repeats 3] [--module chita_ext]

GFLOP/s counts the multiply-adds of the lower triangle twice: n (n + 1) k flops for
gram_rows, k (k + 1) n for gram_cols. On a shared machine the wall time depends on what
else runs; the CPU seconds (all threads of this process) much less, so GFLOP per CPU second
compares builds run at different times. ``--module`` imports ``<module>.kernels`` instead of
``chita_ext.kernels`` (a build of an older commit copied under another package name), for
before/after tables; run each build in its own process.
"""
from __future__ import annotations

import argparse
import importlib
import time

import ml_dtypes
import numpy as np

from machine import describe


def best_time(fn, repeats: int) -> tuple[float, float]:
    """(best wall seconds, best CPU seconds of this process, all threads) over `repeats`."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu


def numpy_gram(A: np.ndarray, idx: np.ndarray, rows: bool) -> np.ndarray:
    AS = A[:, idx].astype(np.float64)
    return AS @ AS.T if rows else AS.T @ AS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--ks", default="3000,27000", help="support sizes for gram_rows")
    ap.add_argument("--cols-k", type=int, default=1000, help="support size for gram_cols")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--module", default="chita_ext")
    ap.add_argument("--no-numpy", action="store_true", help="skip the NumPy baseline")
    args = ap.parse_args()
    kernels = importlib.import_module(f"{args.module}.kernels")
    ks = [int(k) for k in args.ks.split(",")]
    n, p = args.n, 2 * max(ks + [args.cols_k])
    rng = np.random.default_rng(0)
    A = np.asfortranarray(rng.standard_normal((n, p), dtype=np.float32))
    layouts = {
        "f32-col": A,
        "bf16-col": np.asfortranarray(A.astype(ml_dtypes.bfloat16)),
        "f32-row": np.ascontiguousarray(A),
    }
    print(f"# {describe()}; module {args.module}; best of {args.repeats}")
    print("| kernel | A | n | k | wall s | GFLOP/s | CPU s | GFLOP per CPU s | NumPy float64 wall s "
          "| NumPy / ours wall |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    cases = [("gram_rows", label, k) for k in ks for label in layouts]
    cases += [("gram_cols", label, args.cols_k) for label in ("f32-col", "bf16-col")]
    for kernel, label, k in cases:
        M = layouts[label]
        idx = np.sort(rng.choice(p, k, replace=False))
        rows = kernel == "gram_rows"
        fn = getattr(kernels, kernel)
        fn(M, idx)  # warm-up: thread pool, page faults of the output
        wall, cpu = best_time(lambda: fn(M, idx), args.repeats)
        m, depth = (n, k) if rows else (k, n)
        gflop = m * (m + 1) * depth / 1e9
        ref = ratio = "-"
        if not args.no_numpy:
            A32 = M.astype(np.float32, copy=False)  # bf16 widened beforehand, untimed
            t_np, _ = best_time(lambda: numpy_gram(A32, idx, rows), args.repeats)
            ref, ratio = f"{t_np:.3f}", f"{t_np / wall:.2f}"
        print(f"| {kernel} | {label} | {n} | {k} | {wall:.3f} | {gflop / wall:.1f} | {cpu:.3f} "
              f"| {gflop / cpu:.1f} | {ref} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
