"""One prune() at paper scale: MobileNetV1 and ResNet50 at 90% sparsity, with defaults.

Random weights, synthetic 224x224 inputs and labels (drawn on the fly, never held in
memory), ``prune(model, CrossEntropyLoss(), data, 0.9)`` with every default: the planner
picks the samples (500 rows of 16), the store dtype and place, the block approximation,
and fits the stages to the 300 s budget. Reported per net:

- wall time split by phase (``result.timings``: gradients, solve, held-out evaluations of
  the lam search, guard, BatchNorm; "other" is planning, probes and bookkeeping);
- peak RSS: the kernel's high-water mark (``ru_maxrss``; run with ``CHITA_TRACE_RSS=1``
  for the peak of each phase, whose largest is then the high-water mark) and the largest
  VmRSS of a 0.2 s sampler thread, next to the planner's bound
  (``result.scale["predicted_peak_gb"]`` and its parts, docs/pruning.md);
- bytes of A, where it was kept, and the block passes;
- the solver's FULL objective ``1/2||A (w - w_bar)||^2 + lam/2||w - w_bar||^2`` against
  magnitude pruning's on the same A and lam (both computed in the solve pass, exactly).

    python bench/bench_scale.py [--nets mobilenet,resnet50] [--n-samples N]
        [--batch-rows M] [--sparsity 0.9] [--out bench/results/scale.md]

``--n-samples`` / ``--batch-rows`` override the defaults (for a shorter run: say so).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import threading
import time
from pathlib import Path

import torch

import chita_ext
from chita_ext.models import mobilenet_v1, resnet50
from machine import describe

NETS = {"mobilenet": mobilenet_v1, "resnet50": resnet50}
GiB = float(1 << 30)


class SyntheticImages:
    """Batches of N(0, 1) 3x224x224 images and uniform labels, generated when iterated
    (a new draw each pass), so the data never occupies memory."""

    def __init__(self, batch=32, batches=10_000, classes=1000, seed=0):
        self.batch, self.batches, self.classes, self.seed = batch, batches, classes, seed
        self.passes = 0

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.passes)
        self.passes += 1
        for _ in range(self.batches):
            yield (torch.randn(self.batch, 3, 224, 224, generator=g),
                   torch.randint(0, self.classes, (self.batch,), generator=g))


class RssSampler:
    """Largest VmRSS of this process, sampled every ``period`` seconds in a thread."""

    def __init__(self, period=0.2):
        self.period, self.peak, self._stop = period, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        self.peak = max(self.peak, int(line.split()[1]) * 1024)
                        break
            self._stop.wait(self.period)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def bench_net(name, sparsity, n_samples, batch_rows, log, extra=None):
    torch.manual_seed(0)
    model = NETS[name]()
    data = SyntheticImages()
    load0 = os.getloadavg()
    kw = {}
    if n_samples is not None:
        kw["n_samples"] = n_samples
    if batch_rows is not None:
        kw["batch_rows"] = batch_rows
    kw.update(extra or {})
    with RssSampler() as rss:
        t0 = time.perf_counter()
        res = chita_ext.prune(model, torch.nn.CrossEntropyLoss(), data, sparsity, **kw)
        wall = time.perf_counter() - t0
    load1 = os.getloadavg()
    st = res.stages[-1]
    t = res.timings
    phases = {k: round(t.get(k, 0.0), 1) for k in ("gradients", "solve", "lam_search",
                                                   "guard", "bn")}
    phases["other"] = round(wall - sum(phases.values()), 1)
    row = {
        "net": name, "p": res.p, "k": res.k, "stages": len(res.stages),
        "n_samples": res.scale["n_samples"], "batch_rows": res.scale["batch_rows"],
        "rows": res.scale["rows"], "store": f"{res.scale['dtype']} {res.scale['store']}",
        "A_gb": res.scale["store_gb"], "wall_s": round(wall, 1), "phases_s": phases,
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "sampled_rss_gb": round(rss.peak / GiB, 2),
        "predicted_peak_gb": res.scale["predicted_peak_gb"],
        "predicted_parts_gb": res.scale.get("predicted_parts_gb"),
        "measured_peak_gb": res.scale.get("measured_peak_gb"),
        "objective": st.get("objective"), "mp_objective": st.get("mp_objective"),
        "block_objective": st.get("block_objective"), "lam_rel": st.get("lam_rel"),
        "lam_tried": st.get("lam_tried"), "block": st.get("block"),
        "winner": st.get("winner"), "heldout_loss": st.get("heldout_loss"),
        "mp_heldout_loss": st.get("mp_heldout_loss"), "guard": res.guard,
        "load_start": round(load0[0], 2), "load_end": round(load1[0], 2),
        "reasons": res.scale["reasons"], "overrides": {k: str(v) for k, v in kw.items()},
        "nice": os.nice(0),
    }
    log(json.dumps(row))
    return row


def _fmt(v):
    return "n/a" if v is None else f"{v:.5g}"


def _high_water(r):
    """The kernel's peak RSS: the largest phase peak under CHITA_TRACE_RSS=1 (which resets
    the high-water mark, so ru_maxrss then only covers the last phase), else ru_maxrss."""
    traced = r.get("measured_peak_gb")
    return max(traced.values()) if traced else r["peak_rss_gb"]


def to_markdown(rows, cmd):
    out = ["# prune() at paper scale: MobileNetV1 and ResNet50, 90% sparsity, defaults", "",
           f"`{cmd}`", "", f"Machine: {describe()}; torch {torch.__version__}, "
           f"{torch.get_num_threads()} threads.", "",
           "| net | p | samples (rows x m) | A | stages | wall s | gradients s | solve s | "
           "lam search s | guard s | bn s | other s | peak RSS GB (high-water / sampled / "
           "predicted) | objective | MP objective | obj / MP | load start/end |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ph = r["phases_s"]
        ratio = (r["objective"] / r["mp_objective"]) if r["mp_objective"] else float("nan")
        out.append(
            f"| {r['net']} | {r['p']:,} | {r['n_samples']} ({r['rows']} x {r['batch_rows']}) | "
            f"{r['A_gb']} GB {r['store']} | {r['stages']} | {r['wall_s']} | {ph['gradients']} | "
            f"{ph['solve']} | {ph['lam_search']} | {ph['guard']} | {ph['bn']} | {ph['other']} | "
            f"{_high_water(r)} / {r['sampled_rss_gb']} / {r['predicted_peak_gb']} | "
            f"{r['objective']:.6g} | {r['mp_objective']:.6g} | {ratio:.3f} | "
            f"{r['load_start']} / {r['load_end']} |")
    out.append("")
    for r in rows:
        out.append(f"- {r['net']}: lam_rel {r['lam_rel']:.3g} (tried {r['lam_tried']}), "
                   f"block {r['block']}, block-diagonal objective {r['block_objective']:.6g}, "
                   f"held-out loss {r['heldout_loss']:.5g} (MP {_fmt(r['mp_heldout_loss'])}), "
                   f"winner {r['winner']}, guard {r['guard']}; planner: {'; '.join(r['reasons'])}; "
                   f"overrides of prune()'s defaults: {r['overrides'] or 'none'}; nice {r['nice']}"
                   + (f"; measured peak RSS per phase (GB) {r['measured_peak_gb']}, predicted "
                      f"parts (GB) {r['predicted_parts_gb']}" if r.get("measured_peak_gb") else ""))
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nets", default="mobilenet,resnet50")
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--n-samples", type=int, default=None)
    ap.add_argument("--batch-rows", type=int, default=None)
    ap.add_argument("--heldout", type=int, default=None, help="override (say so)")
    ap.add_argument("--bn-samples", type=int, default=None, help="override (say so)")
    ap.add_argument("--no-guard", action="store_true", help="guard=False (say so)")
    ap.add_argument("--store", choices=("ram", "disk"), default=None,
                    help="scale={'store': ...} override")
    ap.add_argument("--out", default=None, help="markdown file for the table")
    ap.add_argument("--json", default=None, help="append each row as a JSON line here")
    args = ap.parse_args()
    rows = []

    def log(s):
        print(s, flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(s + "\n")
    for name in args.nets.split(","):
        extra = {}
        if args.heldout is not None:
            extra["heldout"] = args.heldout
        if args.bn_samples is not None:
            extra["bn_samples"] = args.bn_samples
        if args.no_guard:
            extra["guard"] = False
        if args.store is not None:
            extra["scale"] = {"store": args.store}
        rows.append(bench_net(name, args.sparsity, args.n_samples, args.batch_rows, log,
                              extra))
    cmd = "python bench/bench_scale.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
        if v not in (None, False) and k not in ("out", "json"))
    text = to_markdown(rows, cmd)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
