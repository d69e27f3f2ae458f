"""The pruning pipeline with different solvers: CHITA (one stage) and CHITA++ (4 stages) on
the shipped MLPNet/MNIST checkpoint with `method="iht"` (the pipeline's default, the
paper's solver) and `method="auto"` (solve's default: greedy + swap local search).

    python bench/prune_methods.py [--sparsity 0.9,0.95,0.98] [--out FILE]

Settings as bench/bench_mnist_prune.py: n = 1000 per-sample gradients, lam="auto" over
(1e-4, 1e-3, 1e-2), max_iter=50; accuracy on the 10k MNIST test images, time = the whole
prune() call.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
import bench_mnist_prune as mnist  # noqa: E402
from chita_ext.sweeps import format_table, sweep  # noqa: E402
from machine import describe  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sparsity", default="0.9,0.95,0.98")
    ap.add_argument("--out")
    args = ap.parse_args()
    train, test = mnist.loaders(None)
    dense = mnist.dense_mlpnet()
    common = {"n_samples": 1000, "lam": "auto", "lam_grid": (1e-4, 1e-3, 1e-2), "max_iter": 50}
    configs = {"CHITA iht": {"method": "iht", "stages": 1},
               "CHITA auto": {"method": "auto", "stages": 1},
               "CHITA++ iht": {"method": "iht", "stages": 4},
               "CHITA++ auto": {"method": "auto", "stages": 4}}
    sparsities = [float(s) for s in args.sparsity.split(",")]
    t0 = time.perf_counter()
    result = sweep(lambda: copy.deepcopy(dense), nn.CrossEntropyLoss(), train, test,
                   sparsities, configs, **common)
    text = (f"# Pruning pipeline: iht against auto (MLPNet / MNIST)\n\nMachine: {describe()}; "
            f"torch {torch.__version__}; total {time.perf_counter() - t0:.0f} s\n\n"
            f"Command: `python bench/prune_methods.py {' '.join(sys.argv[1:])}`\n\n"
            + format_table(result) + "\n")
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
