"""GPU microbenchmarks of the CUDA backend's kernels, as a fraction of the copy bandwidth.

Each kernel is first checked against the CPU backend on the same data, then timed with CUDA
events on the current stream through one persistent backend (the solver's situation: no
per-call setup). Bandwidth counts the minimum traffic of the operation (every input byte
read once, every output byte written once) and is reported as a fraction of the
device-to-device copy bandwidth (read + write) measured in the same run.

Usage: python bench/gpu/bench_kernels.py [--n 1024] [--p 1048576] [--out bench/results]
"""
from __future__ import annotations

import argparse
import datetime
import platform
import re
import statistics
import sys
from pathlib import Path

import numpy as np


def fail(msg: str) -> None:
    print(f"bench_kernels: {msg}", file=sys.stderr)
    sys.exit(2)


try:
    import torch
except ImportError:
    fail("needs torch with CUDA (pip install torch)")
import chita_ext
from chita_ext import _arrays, _core, kernels


# ---- timing ----------------------------------------------------------------------------------
def time_ms(fn, repeats: int) -> float:
    """Median milliseconds of fn() over `repeats` runs (after 2 warm-ups), CUDA events."""
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def copy_bandwidth(repeats: int) -> float:
    """Device-to-device copy bandwidth in GB/s (bytes read + bytes written)."""
    nbytes = 1 << 30
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), repeats)
    return 2 * nbytes / (ms * 1e-3) / 1e9


# ---- data ------------------------------------------------------------------------------------------
def column_major(n: int, p: int, dtype, gen) -> torch.Tensor:
    """n x p, column-major (the .T of a contiguous p x n tensor), generated on the GPU."""
    return torch.randn(p, n, device="cuda", generator=gen).to(dtype).T


def to_numpy_matrix(A: torch.Tensor) -> np.ndarray:
    """A CUDA matrix as a column-major numpy array (ml_dtypes.bfloat16 for bfloat16)."""
    import ml_dtypes

    t = A.T.contiguous().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16).T
    return t.numpy().T


def rel_err(got, want) -> float:
    got = np.asarray(got.cpu() if hasattr(got, "cpu") else got, np.float64)
    want = np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / (np.max(np.abs(want)) + 1e-30))


# ---- the benchmark -----------------------------------------------------------------------------------
def run(args) -> list[dict]:
    gen = torch.Generator(device="cuda").manual_seed(0)
    n, p, k = args.n, args.p, args.k or args.p // 10
    rows = []
    copy_gbs = copy_bandwidth(args.repeats)
    rows.append(dict(kernel="device-to-device copy (reference)", dtype="uint8",
                     shape=f"{1 << 30} B", gbytes=2 * (1 << 30) / 1e9,
                     ms=2 * (1 << 30) / copy_gbs / 1e6, gbs=copy_gbs, frac=1.0, err="-"))

    def add(name, dtype, shape, nbytes, fn, err, flops=None):
        ms = time_ms(fn, args.repeats)
        gbs = nbytes / (ms * 1e-3) / 1e9
        row = dict(kernel=name, dtype=dtype, shape=shape, gbytes=nbytes / 1e9, ms=ms, gbs=gbs,
                   frac=gbs / copy_gbs, err=f"{err:.1e}")
        if flops:
            row["kernel"] += f" ({flops / (ms * 1e-3) / 1e9:.0f} GFLOP/s fp64)"
        rows.append(row)
        print(f"{row['kernel']:<45} {dtype:<9} {ms:9.3f} ms {gbs:8.1f} GB/s "
              f"{row['frac']:6.1%}  err {row['err']}", flush=True)

    for dname, tdtype, esize in (("float32", torch.float32, 4), ("bfloat16", torch.bfloat16, 2)):
        A = column_major(n, p, tdtype, gen)
        A_np = to_numpy_matrix(A)  # CPU backend copy for the checks
        info = _arrays.describe_matrix(A)
        be = _arrays.make_backend(info, 0)
        r = torch.randn(n, device="cuda", generator=gen)
        x = torch.randn(p, device="cuda", generator=gen)
        idx = torch.sort(torch.randperm(p, device="cuda", generator=gen)[:k]).values
        xs = torch.randn(k, device="cuda", generator=gen)
        out_p = torch.empty(p, device="cuda")
        out_n = torch.empty(n, device="cuda", dtype=torch.float64)
        P = _arrays.pointer
        r_np, x_np, idx_np, xs_np = (t.cpu().numpy() for t in (r, x, idx, xs))
        shape = f"{n} x {p}"

        err = rel_err(kernels.atr(A, r), kernels.atr(A_np, r_np))
        add("atr (A^T r, all columns)", dname, shape, n * p * esize + 4 * (n + p),
            lambda: _core.kernels.atr(be, info.view, P(r), P(out_p)), err)
        err = rel_err(kernels.atr_subset(A, r, idx), kernels.atr_subset(A_np, r_np, idx_np))
        add("atr_subset (k columns)", dname, f"{shape}, k={k}", n * k * esize + 12 * k + 4 * n,
            lambda: _core.kernels.atr_subset(be, info.view, P(r), P(idx), k, P(out_p)), err)
        err = rel_err(kernels.ax_dense(A, x), kernels.ax_dense(A_np, x_np))
        add("ax_dense (A x)", dname, shape, n * p * esize + 4 * p + 8 * n,
            lambda: _core.kernels.ax_dense(be, info.view, P(x), P(out_n)), err)
        err = rel_err(kernels.ax_sparse(A, idx, xs), kernels.ax_sparse(A_np, idx_np, xs_np))
        add("ax_sparse (A_S x_S)", dname, f"{shape}, k={k}", n * k * esize + 12 * k + 8 * n,
            lambda: _core.kernels.ax_sparse(be, info.view, P(idx), P(xs), k, P(out_n)), err)
        kg = min(k, args.gram_k)
        gidx = idx[:kg].contiguous()
        host = np.empty((n, n))
        err = rel_err(kernels.gram_rows(A, gidx), kernels.gram_rows(A_np, idx_np[:kg]))
        add("gram_rows (A_S A_S^T, n x n)", dname, f"{shape}, k={kg}", n * kg * esize + 8 * n * n,
            lambda: _core.kernels.gram_rows(be, info.view, P(gidx), kg, host.ctypes.data), err,
            flops=n * n * kg)  # upper half only: n^2 k / 2 FMAs = n^2 k flops
        del A, A_np, be
        torch.cuda.empty_cache()

    # vector kernels (length p, float32)
    be = _arrays.make_backend(_arrays.describe_matrix(x.reshape(1, -1)), 0)
    y = torch.randn(p, device="cuda", generator=gen)
    mask = (torch.rand(p, device="cuda", generator=gen) < 0.1).to(torch.uint8)
    out_k = torch.empty(k, device="cuda", dtype=torch.int64)
    x_np, y_np = x.cpu().numpy(), y.cpu().numpy()
    got = kernels.topk_abs(x, k).cpu().numpy()
    err = float(np.any(got != kernels.topk_abs(x_np, k)))  # exact: 0 or 1
    add("topk_abs (radix select + compaction)", "float32", f"m={p}, k={k}", 4 * p + 8 * k,
        lambda: _core.kernels.topk_abs(be, P(x), p, k, P(out_k)), err)
    err = abs(kernels.dot(x, y) - kernels.dot(x_np, y_np)) / abs(kernels.dot(x_np, y_np))
    add("dot (float64 accumulation)", "float32", f"m={p}", 8 * p,
        lambda: _core.kernels.dot(be, P(x), P(y), p), err)
    err = abs(kernels.sq_dist(x, y) - kernels.sq_dist(x_np, y_np)) / kernels.sq_dist(x_np, y_np)
    add("sq_dist", "float32", f"m={p}", 8 * p,
        lambda: _core.kernels.sq_dist(be, P(x), P(y), p), err)
    mask_np = mask.cpu().numpy()
    err = abs(kernels.max_abs_unmasked(x, mask) - kernels.max_abs_unmasked(x_np, mask_np))
    add("max_abs_unmasked", "float32", f"m={p}", 5 * p,
        lambda: _core.kernels.max_abs_unmasked(be, P(x), P(mask), p), err)
    err = abs(kernels.support_change_step(x, y, 0.5) - kernels.support_change_step(x_np, y_np, 0.5))
    add("support_change_step", "float32", f"k={p}", 8 * p,
        lambda: _core.kernels.support_change_step(be, P(x), P(y), p, 0.5), err)
    return rows


def machine_name() -> str:
    name = torch.cuda.get_device_name()
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def write_table(rows: list[dict], args, path: Path) -> None:
    props = torch.cuda.get_device_properties(0)
    info = chita_ext.build_info()
    lines = [
        f"# chita_ext GPU kernels on {torch.cuda.get_device_name()}",
        "",
        f"- date: {datetime.date.today().isoformat()}; host: {platform.node()}",
        f"- device: {props.name}, {props.total_memory / 2**30:.0f} GiB, "
        f"{props.multi_processor_count} SMs, compute capability {props.major}.{props.minor}",
        f"- chita_ext {info['version']}, CUDA architectures {info['cuda_architectures']}; "
        f"torch {torch.__version__} (CUDA {torch.version.cuda})",
        f"- command: `python bench/gpu/bench_kernels.py --n {args.n} --p {args.p} "
        f"--repeats {args.repeats}`",
        "- GB/s counts the minimum traffic (inputs read once, outputs written once); "
        "'of copy' is that over the device-to-device copy bandwidth measured in this run. "
        "'err vs CPU' is the max error relative to max |CPU result| (topk: 1 if any index "
        "differs).",
        "",
        "| kernel | dtype | shape | GB moved | ms (median) | GB/s | of copy | err vs CPU |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['kernel']} | {r['dtype']} | {r['shape']} | {r['gbytes']:.3f} | "
                     f"{r['ms']:.3f} | {r['gbs']:.1f} | {r['frac']:.1%} | {r['err']} |")
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1024, help="rows of A (gradients)")
    ap.add_argument("--p", type=int, default=1 << 20, help="columns of A (weights)")
    ap.add_argument("--k", type=int, default=0, help="support size (default p/10)")
    ap.add_argument("--gram-k", type=int, default=20000, help="columns in the Gram benchmark")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", default="bench/results", help="directory for the table")
    args = ap.parse_args()
    if not chita_ext.build_info()["cuda"]:
        fail("chita_ext was built without CUDA; reinstall with "
             "`pip install . -Ccmake.define.CHITA_CUDA=ON`")
    if chita_ext.cuda_device_count() == 0 or not torch.cuda.is_available():
        fail("no CUDA device visible (to chita_ext or to torch)")
    rows = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_table(rows, args, out / f"gpu_kernels_{machine_name()}.md")


if __name__ == "__main__":
    main()
