"""Per-sample gradients: hooks (one batched forward + backward) against backward and vmap.

For each network (random weights, synthetic inputs and labels, BatchNorm in eval mode),
times, best of ``--repeats``:

(a) ``fwd+bwd``: a plain batched forward + backward of the same n samples (mean loss,
    ``.backward()``), in the chunks the per-sample path uses: the speed of light;
(b) ``hooks``: ``collect_gradients(method="hooks")`` of the n samples into a GradientStore
    (fp32 for the small nets, bf16 for MobileNetV1 / ResNet50), store allocation included;
(c) ``vmap``: ``collect_gradients(method="vmap")`` (``torch.func.vmap(grad)``) on the first
    ``n_vmap`` samples, scaled linearly to n when n_vmap < n (said in the table).

``fill`` is the time to write the (already touched) store once (``fill_``); ``fresh write``
allocates a new store and writes it once, page faults included: no method that hands back
a new store can beat it, and for a small network it is larger than the forward + backward
(MLPNet: a 66 MB store against 130 KB of weights), hence the ratio to the sum of both.
The hooks result is checked against vmap on the rows both computed.

    python bench/bench_gradients.py [--nets mlpnet,mlpnet@1000,resnet20,mobilenet,resnet50]
                                    [--n N] [--repeats 3] [--out bench/results/gradients.md]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from chita_ext.gradients import collect_gradients
from chita_ext.models import MLPNet, mobilenet_v1, resnet20_cifar, resnet50
from machine import describe

# name -> (factory, input shape, classes, store dtype, default n, default n_vmap)
NETS = {
    "mlpnet": (MLPNet, (1, 28, 28), 10, "float32", 512, 512),
    "resnet20": (resnet20_cifar, (3, 32, 32), 10, "float32", 512, 64),
    "mobilenet": (mobilenet_v1, (3, 224, 224), 1000, "bfloat16", 512, 16),
    "resnet50": (resnet50, (3, 224, 224), 1000, "bfloat16", 64, 8),
}


def synthetic(shape, classes, n, batch=128, seed=0):
    """A list of (inputs, labels) batches, like a DataLoader."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]


def best_of(fn, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
        del out
    return best


def fwd_bwd(model, loss_fn, data, chunk):
    """Plain batched forward + backward over the samples of ``data`` in chunks."""
    x = torch.cat([b[0] for b in data])
    y = torch.cat([b[1] for b in data])
    for i in range(0, len(x), chunk):
        model.zero_grad(set_to_none=True)
        loss_fn(model(x[i:i + chunk]), y[i:i + chunk]).backward()


def bench_net(name, n, n_vmap, repeats, log):
    factory, shape, classes, dtype, _, _ = NETS[name]
    torch.manual_seed(0)
    model = factory().eval()
    loss_fn = torch.nn.CrossEntropyLoss()
    data = synthetic(shape, classes, n)
    load0 = os.getloadavg()[0]
    store = collect_gradients(model, loss_fn, data, n, dtype=dtype, method="hooks")
    chunk, p = store.chunk, store.p
    t_fill = best_of(lambda: store.buffer.fill_(0), repeats)
    # the floor of any method that hands back the store: a fresh buffer written once
    t_write = best_of(lambda: torch.empty_like(store.buffer).fill_(0), repeats)
    del store
    t_fb = best_of(lambda: fwd_bwd(model, loss_fn, data, chunk), repeats)
    log(f"{name}: p={p} n={n} chunk={chunk} fwd+bwd {t_fb:.3f} s")
    hooks = None

    def run_hooks():
        nonlocal hooks
        hooks = None  # free the previous store first
        hooks = collect_gradients(model, loss_fn, data, n, dtype=dtype, method="hooks")

    t_hooks = best_of(run_hooks, repeats)
    log(f"{name}: hooks {t_hooks:.3f} s")
    vrep = repeats if n_vmap * p < 40_000_000 else 1  # a single run on the big nets
    vm = None

    def run_vmap():
        nonlocal vm
        vm = collect_gradients(model, loss_fn, data, n_vmap, dtype=dtype, method="vmap")

    t_vmap = best_of(run_vmap, vrep) * n / n_vmap
    # the same rows from both paths, unscaled (the scale depends on the number of rows)
    a = torch.as_tensor(hooks.A[:n_vmap]).float() / hooks.scale
    b = torch.as_tensor(vm.A).float() / vm.scale
    err = float((a - b).norm() / b.norm())
    load1 = os.getloadavg()[0]
    log(f"{name}: vmap {t_vmap:.3f} s (from {n_vmap} rows), rel. difference {err:.1e}")
    return dict(net=name, p=p, n=n, chunk=chunk, dtype=dtype, fill=t_fill, write=t_write,
                fwd_bwd=t_fb,
                hooks=t_hooks, vmap=t_vmap, n_vmap=n_vmap, vrep=vrep, err=err,
                load=(load0, load1))


def table(rows):
    head = ("| net | p | n | chunk | store | fill s | fresh write s | fwd+bwd s | hooks s "
            "| vmap s (rows run) | hooks / fwd+bwd | hooks / (fwd+bwd + fresh write) "
            "| vmap / hooks | hooks vs vmap rel. diff | load avg start/end |")
    out = [head, "|" + "|".join(["---"] * 15) + "|"]
    for r in rows:
        out.append(f"| {r['net']} | {r['p']:,} | {r['n']} | {r['chunk']} | {r['dtype']} "
                   f"| {r['fill']:.3f} | {r['write']:.3f} | {r['fwd_bwd']:.3f} "
                   f"| {r['hooks']:.3f} "
                   f"| {r['vmap']:.1f} ({r['n_vmap']}{'' if r['vrep'] > 1 else ', 1 run'}) "
                   f"| {r['hooks'] / r['fwd_bwd']:.2f} "
                   f"| {r['hooks'] / (r['fwd_bwd'] + r['write']):.2f} "
                   f"| {r['vmap'] / r['hooks']:.1f} "
                   f"| {r['err']:.1e} | {r['load'][0]:.1f} / {r['load'][1]:.1f} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nets", default="mlpnet,mlpnet@1000,resnet20,mobilenet,resnet50",
                    help="comma-separated names, each optionally @n")
    ap.add_argument("--n", type=int, default=None, help="samples (default: per net)")
    ap.add_argument("--n-vmap", type=int, default=None, help="samples for vmap (default: per net)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="write the markdown table here")
    args = ap.parse_args()
    rows = []
    for spec in args.nets.split(","):  # "name" or "name@n"
        name, _, n_spec = spec.partition("@")
        _, _, _, _, n0, nv0 = NETS[name]
        n = int(n_spec) if n_spec else (args.n or n0)
        rows.append(bench_net(name, n, min(n, args.n_vmap or nv0), args.repeats,
                              lambda s: print(s, flush=True)))
    md = table(rows)
    print(md)
    if args.out:
        Path(args.out).write_text(
            "# Per-sample gradients: hooks vs batched forward+backward vs vmap(grad)\n\n"
            f"`python bench/bench_gradients.py {' '.join(os.sys.argv[1:])}`\n\n"
            f"Machine: {describe()}; torch {torch.__version__}, {torch.get_num_threads()} "
            "threads (default).\n\n" + md + "\n")


if __name__ == "__main__":
    main()
