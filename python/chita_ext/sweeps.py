"""Sparsity sweeps: prune fresh copies at each sparsity, tabulate, plot."""
from __future__ import annotations

import io

from .finetuning import evaluate
from .progress import phase
from .pruning import prune

DEFAULT_CONFIGS = {
    "MP": {"method": "mp"},
    "CHITA": {"stages": 1},
    "CHITA++": {},  # prune()'s defaults
}


def sweep(model_factory, loss_fn, data, eval_data, sparsities, configs=None, *,
          progress: bool = False, on_result=None, **common) -> dict:
    """Prune a fresh dense model for every (sparsity, config) pair and evaluate it.

    Parameters
    ----------
    model_factory : callable
        Returns a new trained dense model each call.
    loss_fn, data, eval_data
        As for :func:`chita_ext.prune`; ``eval_data`` gives the reported metrics.
    sparsities : sequence of float
    configs : dict, optional
        ``{label: prune kwargs}``; default MP, CHITA (one stage) and CHITA++ (prune()'s
        defaults).
    on_result : callable, optional
        Called as ``on_result(label, sparsity, PruneResult)`` after each run.
    **common
        Keyword arguments given to every :func:`prune` call (n_samples, lam, ...).

    Returns
    -------
    dict
        ``{"dense": metrics, "rows": [{sparsity, method, accuracy, loss, seconds, ...}]}``.
    """
    configs = configs or DEFAULT_CONFIGS
    sparsities = [float(s) for s in sparsities]
    for s in sparsities:
        if not 0.0 <= s < 1.0:
            raise ValueError(f"sparsity {s} must be in [0, 1)")
    dense = evaluate(model_factory(), loss_fn, eval_data)
    rows = []
    pairs = [(s, label) for s in sparsities for label in configs]
    bar = phase(len(pairs), "sweep", unit="run", enabled=progress)
    for s, label in pairs:
        kw = {"progress": False, **common, **configs[label]}
        res = prune(model_factory(), loss_fn, data, s, eval_data=eval_data, **kw)
        after = res.metrics["after"]
        rows.append({"sparsity": s, "method": label, "accuracy": after.get("accuracy"),
                     "loss": after["loss"], "seconds": res.timings["total"],
                     "objective": res.objective, "lam_rel": res.lam_rel,
                     "stages": len(res.stages), "mp_stages": sum(
                         st.get("winner") == "mp" for st in res.stages),
                     "guard": res.guard, "solver": res.method})
        bar.update(1)
        bar.set_postfix_str(f"{label} at {s:g}: {_cell(rows[-1])}")
        if on_result is not None:
            on_result(label, s, res)
    return {"dense": dense, "rows": rows}


def _cell(row) -> str:
    acc = row["accuracy"]
    return (f"accuracy {100 * acc:.2f}%" if acc is not None else f"loss {row['loss']:.4g}") + \
        f" in {row['seconds']:.1f} s"


def won_by(row) -> str:
    """Who won the stages of a run: "16/16 bso", "15/16 bso, 1 mp", "mp (guard)"..."""
    if row.get("solver") == "mp":
        return "mp"
    if row.get("guard") == "mp":
        return "mp (one-shot, guard)"
    n, mp = row["stages"], row.get("mp_stages", 0)
    return f"{n - mp}/{n} {row.get('solver')}" + (f", {mp} mp" if mp else "")


def format_table(result: dict) -> str:
    """Markdown table: one row per sparsity; accuracy (%) and wall time per method."""
    rows, dense = result["rows"], result["dense"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    metric = "accuracy" if dense.get("accuracy") is not None else "loss"
    fmt = (lambda v: f"{100 * v:.2f}") if metric == "accuracy" else (lambda v: f"{v:.4f}")
    solvers = [m for m in methods if any(r["method"] == m and "stages" in r and
                                         r.get("solver") != "mp" for r in rows)]
    head = ["sparsity", "dense"] + [f"{m} {'acc %' if metric == 'accuracy' else 'loss'}"
                                   for m in methods] + [f"{m} time s" for m in methods] + \
        [f"{m} stages won" for m in solvers]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by = {(r["sparsity"], r["method"]): r for r in rows}
    for s in dict.fromkeys(r["sparsity"] for r in rows):
        cells = [f"{s:.2f}", fmt(dense[metric])]
        cells += [fmt(by[(s, m)][metric]) if (s, m) in by else "" for m in methods]
        cells += [f"{by[(s, m)]['seconds']:.1f}" if (s, m) in by else "" for m in methods]
        cells += [won_by(by[(s, m)]) if (s, m) in by else "" for m in solvers]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_sweep(result: dict, path=None, title: str = "accuracy vs sparsity") -> bytes:
    """Accuracy (or loss) against sparsity for every method, dense as a dashed line.

    Writes a PNG to ``path`` when given; always returns the PNG bytes.
    """
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows, dense = result["rows"], result["dense"]
    metric = "accuracy" if dense.get("accuracy") is not None else "loss"
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for m in dict.fromkeys(r["method"] for r in rows):
        pts = sorted((r["sparsity"], r[metric]) for r in rows if r["method"] == m)
        ax.plot([100 * s for s, _ in pts], [100 * v if metric == "accuracy" else v for _, v in pts],
                marker="o", label=m)
    dv = 100 * dense[metric] if metric == "accuracy" else dense[metric]
    ax.axhline(dv, color="gray", linestyle="--", label="dense")
    ax.set_xlabel("sparsity (%)")
    ax.set_ylabel("test accuracy (%)" if metric == "accuracy" else "test loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        with open(path, "wb") as fh:
            fh.write(data)
    return data
