"""``chita-prune``: prune a model (or run the MNIST demo) from the command line."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

from . import TORCH_INSTALL
from .datasets import LOADERS, SPEC_HELP
from .demo import FULL, QUICK, describe
from .schedules import SCHEDULES
from .solve import METHODS

DEMO_HELP = f"With no --model (or with --demo): MLPNet on MNIST, {describe(FULL)}."
# Modules of the [torch] extra: a missing one gets the install hint, not a bare ImportError.
TORCH_EXTRA = ("torch", "safetensors", "tqdm", "matplotlib")
N_SAMPLES = 1000  # gradient samples per stage for --model runs


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block), exit status 2."""

    def error(self, message):  # noqa: D102
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} must be an integer >= {low}")
        return value
    parse.__name__ = f"int >= {low}"
    return parse


def _stages(text: str):
    if text == "auto":
        return "auto"
    return _int_at_least(1)(text)


_stages.__name__ = "'auto' or int >= 1"


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{value} must be a positive number of seconds")
    return value


def parse_sparsities(text: str) -> list:
    """``"0.9"`` or ``"0.5,0.7,0.9"`` -> list of floats, each checked to lie in [0, 1)."""
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--sparsity {text!r}: give numbers like 0.9 or 0.5,0.7,0.9") from None
    bad = [v for v in vals if not 0.0 <= v < 1.0]
    if not vals or bad:
        raise ValueError(f"--sparsity {text!r}: every value must be in [0, 1) (e.g. 0.9)")
    return vals


def parse_lam(text: str) -> dict:
    """``auto`` | ``0.5`` (absolute) | ``rel:0.01`` (relative to ||A||_F^2 / p).

    None (flag not given) and ``auto`` keep prune()'s default: lam chosen at every stage on
    held-out loss.
    """
    if text is None:
        return {}
    if text == "auto":
        return {"lam": "auto"}
    try:
        value = float(text[4:] if text.startswith("rel:") else text)
    except ValueError:
        value = None
    if value is None or not 0.0 < value < float("inf"):
        raise ValueError(f"--lam {text!r}: pass auto, a positive number, or rel:0.01")
    if text.startswith("rel:"):
        return {"lam": "auto", "lam_grid": (value,)}
    return {"lam": value}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (kept separate so docs and tests can inspect it)."""
    ap = _Parser(prog="chita-prune", description=__doc__.replace("``", "") + " " + DEMO_HELP)
    pos, nonneg = _int_at_least(1), _int_at_least(0)
    ap.add_argument("--demo", action="store_true", help="run the built-in MNIST demo")
    ap.add_argument("--quick", action="store_true",
                    help=f"reduced demo ({describe(QUICK)}); also CHITA_DEMO_QUICK=1")
    ap.add_argument("--model", help=SPEC_HELP["--model"] + "; looked up in the current "
                    "directory first, like python -m")
    ap.add_argument("--checkpoint", help="state_dict to load (.safetensors or torch.save file)")
    ap.add_argument("--data", default="mnist", help=SPEC_HELP["--data"])
    ap.add_argument("--loss", default="cross_entropy", help=SPEC_HELP["--loss"])
    ap.add_argument("--sparsity", help="one value (0.9) or a sweep (0.5,0.7,0.9,0.95,0.98)")
    ap.add_argument("--method", default="bso", choices=METHODS,
                    help="solver of each stage (default bso: the exact backsolve on the "
                         "stage's k largest weights; any chita_ext.solve method)")
    ap.add_argument("--stages", type=_stages, default=None,
                    help="CHITA++ stages: auto (default: 16 from 90%% sparsity, fewer below "
                         f"and to fit --time-budget) or a count (--quick: {QUICK['stages']})")
    ap.add_argument("--time-budget", type=_positive_float, default=None,
                    help="seconds per prune(); the stages are planned to fit (default 300 "
                         "with --stages auto)")
    ap.add_argument("--fisher", default="auto", choices=("auto", "empirical", "tempered"),
                    help="gradients forming A (auto: tempered only when the empirical "
                         "Fisher is degenerate)")
    ap.add_argument("--schedule", default="poly", choices=SCHEDULES, help="stage sparsities")
    ap.add_argument("--n-samples", type=pos, default=None,
                    help=f"gradient samples per stage (default {N_SAMPLES}; the demo "
                         f"{FULL['n_samples']}, --quick {QUICK['n_samples']})")
    ap.add_argument("--batch-rows", type=pos, default=1, help="samples averaged per row of A")
    ap.add_argument("--lam", default=None,
                    help="auto (default: chosen per stage on held-out loss), a float "
                         "(absolute), or rel:X (X*||A||_F^2/p)")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    ap.add_argument("--max-iter", type=nonneg, default=None,
                    help="iterations of iterative solvers (default 100)")
    ap.add_argument("--finetune-steps", type=nonneg, default=0, help="SGD steps after each stage")
    ap.add_argument("--no-mp", action="store_true", help="sweeps: skip the magnitude baseline")
    ap.add_argument("--threads", type=pos, default=None, help="CPU threads (torch and solver)")
    ap.add_argument("--out", default="chita-prune-out",
                    help="output directory (new, or an earlier output, which is replaced)")
    ap.add_argument("--no-progress", "--quiet", action="store_true", dest="no_progress",
                    help="no progress bars or progress lines")
    ap.add_argument("--seed", type=int, default=0)
    return ap


def _loss(spec: str):
    import torch

    from .datasets import resolve_callable
    if spec == "cross_entropy":
        return torch.nn.CrossEntropyLoss()
    if spec == "mse":
        return torch.nn.MSELoss()
    return resolve_callable(spec, "--loss")


def _user_setup(args, n_samples: int):
    """Model, data and loss for --model runs, all checked before any long work."""
    import torch

    from .checks import check_data, check_model_fits
    from .datasets import get_data, resolve_callable
    from .io import load_checkpoint, load_state

    factory = resolve_callable(args.model, "--model")
    loss_fn = _loss(args.loss)
    state = load_checkpoint(args.checkpoint) if args.checkpoint else None

    def make():
        try:
            model = factory()
        except TypeError as exc:  # needs arguments: not a factory
            raise TypeError(f"--model {args.model!r}: calling it with no arguments failed "
                            f"({exc}); expected {SPEC_HELP['--model']}") from exc
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"--model {args.model!r} returned a {type(model).__name__}, not a "
                            f"torch.nn.Module; expected {SPEC_HELP['--model']}")
        if state is not None:
            load_state(model, state, source=f"checkpoint {args.checkpoint}")
        return model.eval()

    model = make()  # fail now on a mismatched checkpoint
    train, test = get_data(args.data)
    check_model_fits(model, loss_fn, train)  # one forward pass, before any gradient work
    if test is not None:
        check_model_fits(model, loss_fn, test)
    check_data(train, n_samples)
    return make, loss_fn, train, test


def _common(args, defaults: dict) -> dict:
    kw = dict(defaults)
    kw.update(parse_lam(args.lam), dtype=args.dtype, batch_rows=args.batch_rows,
              schedule=args.schedule, finetune_steps=args.finetune_steps, method=args.method,
              fisher=args.fisher, threads=args.threads, progress=not args.no_progress)
    if args.time_budget is not None:
        kw["time_budget"] = args.time_budget
    if args.n_samples is not None:
        kw["n_samples"] = args.n_samples
    if args.max_iter is not None:
        kw["max_iter"] = args.max_iter
    return kw


def _sig(value, digits: int = 5) -> str:
    """A float with ``digits`` significant digits ("n/a" for None)."""
    return "n/a" if value is None else f"{value:.{digits}g}"


def _metrics(m: dict) -> str:
    return ", ".join(f"{k} {_sig(v) if isinstance(v, float) else v}" for k, v in m.items())


def _layer_table(res) -> str:
    lines = ["| layer | density |", "|---|---|"]
    lines += [f"| {n} | {d:.4f} |" for n, d in res.densities.items()]
    m = res.metrics
    lines += ["", f"global sparsity {res.sparsity:.4f} (k={res.k} of p={res.p}), "
              f"objective {_sig(res.objective, 6)}, lam {_sig(res.lam, 4)}, "
              f"{res.timings['total']:.1f} s"]
    if "before" in m:
        lines.append(f"metrics before: {_metrics(m['before'])}; after: {_metrics(m['after'])}")
    if res.method != "mp":
        lines += ["", "| stage | sparsity | k | lam_rel | won by | held-out loss | BatchNorm |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {st['stage']} | {st['sparsity']:.4f} | {st['k']} | "
                  f"{_sig(st.get('lam_rel'), 3)} | {st['winner']} | "
                  f"{_sig(st.get('heldout_loss'), 4)} | {st.get('bn', 'n/a')} |"
                  for st in res.stages]
        lines.append(f"\nfinal guard: {res.guard} (one-shot magnitude pruning of the dense "
                     "model is kept when its held-out loss is lower)")
    return "\n".join(lines)


def check_args(args) -> dict:
    """Every check that needs neither torch nor the data, so bad input fails in a second.

    Returns ``{"sparsities", "demo", "n_samples"}`` for :func:`run`.
    """
    from .datasets import check_spec
    from .io import check_checkpoint_path, check_output_dir

    sparsities = parse_sparsities(args.sparsity) if args.sparsity else None
    parse_lam(args.lam)
    demo = args.model is None or args.demo
    if demo and args.checkpoint:
        raise ValueError("--checkpoint needs --model (the module:factory that builds its "
                         "architecture); the demo uses its own MLPNet")
    if not demo:
        if sparsities is None:
            raise ValueError("--sparsity is required with --model (e.g. --sparsity 0.9)")
        check_spec(args.model, "--model")
        if args.data not in LOADERS:
            check_spec(args.data, "--data")
        if args.loss not in ("cross_entropy", "mse"):
            check_spec(args.loss, "--loss")
        if args.checkpoint:
            check_checkpoint_path(args.checkpoint)
    n_samples = args.n_samples or (N_SAMPLES if not demo else None)
    if n_samples is not None and args.batch_rows > n_samples:
        raise ValueError(f"--batch-rows {args.batch_rows} must be <= --n-samples {n_samples}")
    check_output_dir(args.out)
    return {"sparsities": sparsities, "demo": demo, "n_samples": n_samples}


def run(args) -> str | None:
    """Carry out a parsed command line; returns the summary printed at the end (None on
    the ranks other than 0 under torchrun, which write nothing)."""
    checked = check_args(args)
    sparsities, demo = checked["sparsities"], checked["demo"]
    import torch

    from .distributed.launch import join_torchrun, rank
    from .io import atomic_dir, save_pruned
    from .pruning import prune
    from .sweeps import format_table, plot_sweep, sweep

    join_torchrun()  # under torchrun: every rank joins, prune() shards, rank 0 writes
    writer = rank() == 0
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    progress = not args.no_progress and writer
    if demo:
        from .demo import demo_setup
        quick = args.quick or os.environ.get("CHITA_DEMO_QUICK") == "1"
        d = demo_setup(quick=quick, progress=progress, stages=args.stages, n_samples=args.n_samples)
        make, loss_fn, train, test = d["factory"], d["loss_fn"], d["train"], d["test"]
        sparsities, configs = sparsities or list(d["sparsities"]), d["configs"]
        common = _common(args, d["common"])
    else:
        make, loss_fn, train, test = _user_setup(args, checked["n_samples"])
        stages = args.stages or "auto"
        label = "CHITA" if stages == 1 else "CHITA++"
        configs = {"MP": {"method": "mp"}} if not args.no_mp else {}
        configs[label] = {"stages": stages}
        common = _common(args, {"n_samples": N_SAMPLES})
    out = Path(args.out)
    if len(sparsities) == 1 and not demo:
        res = prune(make(), loss_fn, train, sparsities[0], eval_data=test,
                    **{**common, **configs[label]})
        summary = _layer_table(res)
        if not writer:
            return None
        save_pruned(out, res.model, res.masks, res.report(), extra_files={"summary.md": summary})
        return summary + f"\n\nwrote {out}/ (model, masks, report.json, summary.md)"
    t0 = time.perf_counter()
    common.pop("progress")  # one bar (or one line per run) for the sweep, none per run
    with atomic_dir(out) if writer else contextlib.nullcontext() as tmp:
        def keep(label, s, res):
            if tmp is not None:
                save_pruned(tmp / "models" / f"{label.split()[0]}_s{s:.2f}", res.model,
                            res.masks, res.report())
        result = sweep(make, loss_fn, train, test, sparsities, configs, on_result=keep,
                       progress=progress, **common)
        if tmp is None:  # not rank 0: rank 0 writes the outputs
            return None
        table = format_table(result)
        (tmp / "sweep.md").write_text(table + "\n")
        (tmp / "sweep.json").write_text(json.dumps(result, indent=2))
        plot_sweep(result, tmp / "sweep.png", title="test accuracy vs sparsity")
    return (f"{table}\n\nsweep of {len(result['rows'])} runs in {time.perf_counter() - t0:.1f} s; "
            f"wrote {out}/sweep.md, sweep.json, sweep.png and models/")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _passive_torch_openmp() -> None:
    """torch's CPU build runs on its own libgomp, whose threads spin for milliseconds after
    every parallel region: on a busy machine the demo burnt ~6x the CPU it needed. Ask for
    passive waiting before torch is first imported, unless the user chose a policy."""
    if "torch" not in sys.modules and not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(os.environ):
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def main(argv=None) -> int:
    """Console entry point; returns the exit status (2 on bad input, 130 when interrupted)."""
    _passive_torch_openmp()  # first: before anything imports torch
    args = build_parser().parse_args(argv)
    try:
        summary = run(args)
        if summary is not None:  # None on the ranks other than 0 under torchrun
            print(summary)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in TORCH_EXTRA:
            print(f"chita-prune: error: {_one_line(exc)}", file=sys.stderr)
        else:
            print(f"chita-prune: error: {_one_line(exc)}; chita-prune needs the [torch] extra: "
                  f"{TORCH_INSTALL}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, ImportError, OSError) as exc:
        print(f"chita-prune: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("chita-prune: interrupted; no output directory was written", file=sys.stderr)
        return 130
    finally:
        _leave_torchrun()
    return 0


def _leave_torchrun() -> None:
    """Destroy the process group that run() joined under torchrun (if it did)."""
    launch = sys.modules.get("chita_ext.distributed.launch")
    if launch is not None:
        launch.leave()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
