"""Pruned-MLP test accuracy of our default (`auto`) against OMP's support, over several
random draws of the n gradient samples (one trained network), so that a difference can be
told from the luck of one draw (a paired t interval and a sign test over the draws). Also
the test loss, and the objective on a held-out draw of n other samples (same lam): does a
lower objective on the n samples carry over to samples the solver did not see?

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
from scipy import stats

sys.path.insert(0, os.path.dirname(__file__))
import chita_ext  # noqa: E402
from compare_solvers import mnist_gradients, numpy_omp, score, test_accuracy_and_loss  # noqa: E402
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
    rows = []  # dicts, one per (draw, sparsity)
    for draw in range(args.draws):
        A, w_bar, model = mnist_gradients(args.n, args.hidden, seed=0, sample_seed=1000 + draw)
        A_held, _, _ = mnist_gradients(args.n, args.hidden, seed=0, sample_seed=9000 + draw)
        p = A.shape[1]
        lam = args.lam_rel * float(np.sum(A.astype(np.float64) ** 2)) / p

        def held_out(w):
            d = w.astype(np.float64) - w_bar
            return 0.5 * float(np.sum((A_held.astype(np.float64) @ d) ** 2)) + \
                0.5 * lam * float(d @ d)

        for sp in sparsities:
            k = int(round((1 - sp) * p))
            t0 = time.perf_counter()
            ours = chita_ext.solve(A, w_bar, k, lam=lam, threads=1)
            t1 = time.perf_counter()
            omp = score(A, w_bar, lam, numpy_omp(A, w_bar, k, lam))
            t2 = time.perf_counter()
            (acc_a, loss_a), (acc_o, loss_o) = (test_accuracy_and_loss(model, ours.w),
                                                test_accuracy_and_loss(model, omp.w))
            rows.append(dict(draw=draw, sp=sp, f_a=ours.objective, f_o=omp.objective,
                             h_a=held_out(ours.w), h_o=held_out(omp.w), acc_a=acc_a,
                             acc_o=acc_o, loss_a=loss_a, loss_o=loss_o, t_a=t1 - t0,
                             t_o=t2 - t1))
            print(rows[-1], flush=True)
    lines = [f"# Pruned-MLP accuracy over {args.draws} draws of n = {args.n} samples", "",
             f"Machine: {describe()}", "",
             "Command: `python bench/accuracy_draws.py " + " ".join(sys.argv[1:]) + "`", "",
             "Held-out objective: f(w) with A from n other samples (same lam, b = A w_bar).", "",
             "| sparsity | auto objective < OMP's (draws) | auto held-out objective < OMP's "
             "| mean accuracy: auto | OMP support | auto - OMP: mean (min, max) "
             "| 95% interval of the mean difference (paired t) "
             "| auto more accurate (draws) | sign test p | auto lower test loss (draws) "
             "| mean time (s): auto / OMP |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for sp in sparsities:
        r = [row for row in rows if row["sp"] == sp]
        col = lambda key: np.array([row[key] for row in r], dtype=float)  # noqa: E731
        d = col("acc_a") - col("acc_o")
        half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
        wins, decided = int(np.sum(d > 0)), int(np.sum(d != 0))
        sign_p = stats.binomtest(wins, decided, 0.5).pvalue if decided else 1.0
        lines.append(
            f"| {sp} | {int(np.sum(col('f_a') < col('f_o')))}/{len(r)} | "
            f"{int(np.sum(col('h_a') < col('h_o')))}/{len(r)} | {col('acc_a').mean():.4f} | "
            f"{col('acc_o').mean():.4f} | {d.mean():+.4f} ({d.min():+.4f}, {d.max():+.4f}) | "
            f"[{d.mean() - half:+.4f}, {d.mean() + half:+.4f}] | "
            f"{wins}/{len(r)} (ties {len(r) - decided}) | {sign_p:.3f} | "
            f"{int(np.sum(col('loss_a') < col('loss_o')))}/{len(r)} | "
            f"{col('t_a').mean():.2f} / {col('t_o').mean():.2f} |")
    lines += ["", "| draw | sparsity | objective: auto / OMP | held-out objective: auto / OMP "
              "| accuracy: auto / OMP | test loss: auto / OMP |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['draw']} | {r['sp']} | {r['f_a']:.6e} / {r['f_o']:.6e} | "
              f"{r['h_a']:.6e} / {r['h_o']:.6e} | {r['acc_a']:.4f} / {r['acc_o']:.4f} | "
              f"{r['loss_a']:.4f} / {r['loss_o']:.4f} |" for r in rows]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
