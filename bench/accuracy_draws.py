"""Pruned-MLP test accuracy of our default (`auto`) against OMP's support, over several
random draws of the n gradient samples (one trained network), so that a difference can be
told from the luck of one draw.

    python bench/accuracy_draws.py --n 128 --draws 8 --sparsity 0.98,0.95,0.9 --out FILE

Problem as in compare_solvers.py (A = per-sample gradients / sqrt(n), b = A w_bar,
lam = 1e-3 ||A||_F^2 / p); OMP is compare_solvers.numpy_omp (sklearn's selection rule),
its support re-scored with our exact backsolve. Weights = the solver's w, biases kept, no
fine-tuning.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import chita_ext  # noqa: E402
from compare_solvers import mnist_gradients, numpy_omp, score, test_accuracy  # noqa: E402
from machine import describe  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--draws", type=int, default=8)
    ap.add_argument("--sparsity", default="0.98,0.95,0.9")
    ap.add_argument("--lam-rel", type=float, default=1e-3)
    ap.add_argument("--out")
    args = ap.parse_args()
    sparsities = [float(s) for s in args.sparsity.split(",")]
    rows = []  # (draw, sparsity, f_auto, f_omp, acc_auto, acc_omp, t_auto, t_omp)
    for draw in range(args.draws):
        A, w_bar, model = mnist_gradients(args.n, args.hidden, seed=0, sample_seed=1000 + draw)
        p = A.shape[1]
        lam = args.lam_rel * float(np.sum(A.astype(np.float64) ** 2)) / p
        for sp in sparsities:
            k = int(round((1 - sp) * p))
            t0 = time.perf_counter()
            ours = chita_ext.solve(A, w_bar, k, lam=lam, threads=1)
            t1 = time.perf_counter()
            omp = score(A, w_bar, lam, numpy_omp(A, w_bar, k, lam))
            t2 = time.perf_counter()
            rows.append((draw, sp, ours.objective, omp.objective, test_accuracy(model, ours.w),
                         test_accuracy(model, omp.w), t1 - t0, t2 - t1))
            print(*(f"{v:.6g}" if isinstance(v, float) else v for v in rows[-1]), flush=True)
    lines = [f"# Pruned-MLP accuracy over {args.draws} draws of n = {args.n} samples", "",
             f"Machine: {describe()}", "",
             "Command: `python bench/accuracy_draws.py " + " ".join(sys.argv[1:]) + "`", "",
             "| sparsity | auto objective < OMP's (draws) | mean accuracy: auto | OMP support "
             "| auto - OMP: mean (min, max) | auto more accurate (draws) | mean time (s): auto / OMP |",
             "|---|---|---|---|---|---|---|"]
    for sp in sparsities:
        r = np.array([row[2:] for row in rows if row[1] == sp], dtype=float)
        d = r[:, 2] - r[:, 3]
        lines.append(f"| {sp} | {int(np.sum(r[:, 0] < r[:, 1]))}/{len(r)} | {r[:, 2].mean():.4f} | "
                     f"{r[:, 3].mean():.4f} | {d.mean():+.4f} ({d.min():+.4f}, {d.max():+.4f}) | "
                     f"{int(np.sum(d > 0))}/{len(r)} (ties {int(np.sum(d == 0))}) | "
                     f"{r[:, 4].mean():.2f} / {r[:, 5].mean():.2f} |")
    lines += ["", "| draw | sparsity | auto objective | OMP objective | auto accuracy | OMP accuracy |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {d} | {sp} | {fa:.6e} | {fo:.6e} | {aa:.4f} | {ao:.4f} |"
              for d, sp, fa, fo, aa, ao, _, _ in rows]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
