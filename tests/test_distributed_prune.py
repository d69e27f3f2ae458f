"""prune() inside real gloo groups (2 and 3 ranks on localhost) against single-process prune.

Each group runs every case once (tests/multiproc.py); the tests compare each rank's result
with ``prune`` on the same model and the same batches in this process: the same masks, the
same per-stage decisions (lam tried and chosen, magnitude guard, BatchNorm statistics),
weights equal to rounding, and a model that is bitwise the same on every rank.
"""
from __future__ import annotations

import functools
import time
import traceback

import numpy as np
import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available():
    pytest.skip("torch.distributed is not available in this torch build", allow_module_level=True)

from chita_ext.datasets import load_digits_arrays  # noqa: E402
from chita_ext.finetuning import finetune  # noqa: E402
from chita_ext.params import select_params  # noqa: E402
from chita_ext.pruning import prune  # noqa: E402
from conftest import make_instance  # noqa: E402
from multiproc import init_gloo, run_group, save_rank_results  # noqa: E402

LOSS = torch.nn.CrossEntropyLoss()
BATCH = 32
COMMON = {"n_samples": 96, "heldout": 128, "bn_samples": 128, "threads": 1, "progress": False}
# name -> (model, prune options)
CASES = {
    "bso": ("mlp", {"sparsity": 0.8, "stages": 3}),                  # k > n: Woodbury
    "bso-k<=n": ("mlp", {"sparsity": 0.98, "stages": 2}),            # k = 47 <= n = 96
    "iht": ("mlp", {"sparsity": 0.9, "stages": 2, "method": "iht", "max_iter": 20,
                    "lam_grid": (1e-3, 1e-2)}),
    "bn": ("bn", {"sparsity": 0.85, "stages": 2}),
    "finetune-bn": ("bn", {"sparsity": 0.8, "stages": 2, "finetune_steps": 3}),
}
# Fine-tuning under DDP takes R batches per step (one per rank): not the single-process
# path, so only its first stage (before any fine-tuning) is compared.
GRADUAL = {"finetune-bn"}
CASES.update({
    "grad-term-bf16": ("mlp", {"sparsity": 0.85, "stages": 2, "grad_term": True,
                               "dtype": "bfloat16"}),
    "fixed-lam-active": ("mlp", {"sparsity": 0.9, "stages": 1, "method": "active",
                                 "lam": 1e-3, "max_iter": 20}),
    "mp": ("mlp", {"sparsity": 0.9, "method": "mp"}),
    "eval-data": ("mlp", {"sparsity": 0.9, "stages": 1, "eval": True}),
})
# The 3 ranks share 2 cores: iht and active, whose distributed solves test_distributed.py
# checks at R = 3, run in the 2-rank group only.
CASES_FOR = {2: list(CASES), 3: [k for k in CASES if k not in ("iht", "fixed-lam-active")]}
PAIRS = [(w, k) for w in (2, 3) for k in CASES_FOR[w]]
FINETUNE_STEPS = 4
# ShardedRidgePath against chita_ext.RidgePath: (instance, n, p, k, with alpha, bf16)
RIDGE = {"woodbury": ("gaussian", 24, 203, 40, False, False),
         "woodbury-alpha": ("correlated", 24, 203, 40, True, False),
         "k<=n-alpha": ("gaussian", 24, 203, 10, True, False),
         "woodbury-bf16": ("heavy", 24, 203, 60, False, True)}
RIDGE_LAMS = (1e-3, 1e-1, 10.0)
RIDGE_SHARDS = {2: (0, 120, 203), 3: (0, 50, 150, 203)}  # unequal column blocks


def _models():
    return {"mlp": lambda: torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                               torch.nn.Linear(32, 10)),
            "bn": lambda: torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.BatchNorm1d(32),
                                              torch.nn.ReLU(), torch.nn.Linear(32, 10))}


@functools.lru_cache(maxsize=1)
def _trained():
    """Both models trained briefly on scikit-learn digits; the batches, unshuffled."""
    pytest.importorskip("sklearn")  # here, not at import: the ranks import this module
    x_tr, y_tr, x_te, y_te = load_digits_arrays(seed=0)
    X, y = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    batches = [(X[i:i + BATCH], y[i:i + BATCH]) for i in range(0, len(X), BATCH)]
    test = [(torch.from_numpy(x_te[i:i + 100]), torch.from_numpy(y_te[i:i + 100]))
            for i in range(0, len(x_te), 100)]
    states = {}
    for name, make in _models().items():
        torch.manual_seed(1)
        model = make()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(1):  # one epoch: a model that does not fit every sample yet
            for xb, yb in batches:
                opt.zero_grad()
                LOSS(model(xb), yb).backward()
                opt.step()
        states[name] = model.eval().state_dict()
    return states, batches, test


def _model(states, name):
    model = _models()[name]()
    model.load_state_dict(states[name])
    return model.eval()


def _prune(states, batches, test, case):
    name, kw = case
    kw = dict(kw)
    eval_data = test if kw.pop("eval", False) else None
    sparsity = kw.pop("sparsity")
    res = prune(_model(states, name), LOSS, batches, sparsity, eval_data=eval_data,
                **COMMON, **kw)
    sel = select_params(res.model)
    return {"w": sel.flatten(), "masks": {k: v.numpy() for k, v in res.masks.items()},
            "state": {k: v.clone() for k, v in res.model.state_dict().items()},
            "stages": res.stages, "guard": res.guard, "metrics": res.metrics,
            "distributed": res.distributed, "timings": res.timings, "k": res.k}


# ---- what each rank runs ----------------------------------------------------------------
def _rank_cases(cases, trained):
    states, batches, test = trained
    out = {}
    for key, case in cases.items():
        t0 = time.perf_counter()
        try:
            out[key] = _prune(states, batches, test, case)
        except Exception:  # noqa: BLE001 - reported by the test that reads this case
            out[key] = traceback.format_exc()
        out[key + "_seconds"] = time.perf_counter() - t0
    return out


def _rank_checks(rank, world, tmpdir, trained):
    """Errors raised on every rank, the start-up sync, save_pruned written once, DDP."""
    import chita_ext.io as io
    from chita_ext.distributed.comm import Comm
    from chita_ext.distributed.finetune import finetune_ddp
    from chita_ext.distributed.sync import sync_model

    states, batches, _ = trained
    out = {}
    attempts = {
        "swap": lambda: prune(_model(states, "mlp"), LOSS, batches, 0.9, method="swap",
                              **COMMON),
        "disagree": lambda: prune(_model(states, "mlp"), LOSS, batches, 0.8 + 0.05 * rank,
                                  stages=1, **COMMON),
    }
    for key, call in attempts.items():
        try:
            call()
            out[key] = None
        except Exception as exc:  # noqa: BLE001 - the test inspects the type and message
            out[key] = (type(exc).__name__, str(exc))
    # A rank that starts from other weights is brought to rank 0's first.
    model = _model(states, "mlp")
    if rank == world - 1:
        with torch.no_grad():
            model[0].weight.mul_(1.5)
    res = prune(model, LOSS, batches, 0.8, stages=1, **COMMON)
    out["perturbed"] = select_params(res.model).flatten()
    out["sync_again"] = sync_model(Comm(), res.model)
    # save_pruned: rank 0 writes, the others wait for it.
    calls = []
    real = io.save_pruned
    io.save_pruned = lambda *a, **k: (calls.append(1), real(*a, **k))[1]
    try:
        res.save_pruned(f"{tmpdir}/saved")
    finally:
        io.save_pruned = real
    out["save_calls"] = len(calls)
    # out=: each rank memory-maps its own column block of A.
    prune(_model(states, "mlp"), LOSS, batches, 0.8, stages=1, out=f"{tmpdir}/A.npy",
          **COMMON)
    out["memmap"] = np.load(f"{tmpdir}/A.rank{rank}.npy", mmap_mode="r").shape
    # chita-prune --model inside the group: every rank prunes, rank 0 prints and writes.
    import contextlib
    import io as text_io

    from chita_ext.cli import main
    printed = text_io.StringIO()
    with contextlib.redirect_stdout(printed):
        out["cli_rc"] = main(["--model", "chita_ext.models:mlp_digits", "--data", "digits",
                              "--sparsity", "0.6", "--n-samples", "64", "--lam", "rel:0.001",
                              "--max-iter", "10", "--threads", "1", "--no-progress",
                              "--out", f"{tmpdir}/cli"])
    out["cli_stdout"] = printed.getvalue()
    out["cli_group_kept"] = dist.is_initialized()  # main() leaves a group it did not make
    # DDP fine-tuning on its own, to compare with one process on the merged batches.
    model = _model(states, "mlp")
    masks = {n: (p.detach().abs() > 0.05) for n, p in model.named_parameters()
             if n.endswith("weight")}
    out["ddp_losses"] = finetune_ddp(Comm(), model, LOSS, batches, masks, FINETUNE_STEPS,
                                     lr=0.05)
    out["ddp_state"] = {k: v.clone() for k, v in model.state_dict().items()}
    out["ddp_masks"] = masks
    if rank == 0:  # DDP is gone: a backward on one rank alone is plain and local
        model.zero_grad()
        LOSS(model(batches[0][0]), batches[0][1]).backward()
        out["plain_grad"] = model[0].weight.grad.clone()
    return out


def _ridge_instance(kind, n, p, k, with_alpha, bf16):
    A, w_bar = make_instance(kind, n, p, seed=11)
    alpha = (np.random.default_rng(12).standard_normal(p) * 0.05).astype(np.float32) \
        if with_alpha else None
    if bf16:  # column-major bfloat16 torch tensor
        A = torch.from_numpy(np.ascontiguousarray(A.T)).to(torch.bfloat16).T
    return A, w_bar, k, alpha


def _rank_ridge(rank, world):
    """This rank's ShardedRidgePath solutions (global w gathered by the caller)."""
    from chita_ext.distributed.ridge_path import ShardedRidgePath

    out = {}
    for name, spec in RIDGE.items():
        A, w_bar, k, alpha = _ridge_instance(*spec)
        a, b = RIDGE_SHARDS[world][rank], RIDGE_SHARDS[world][rank + 1]
        A_r = A[:, a:b]
        A_r = A_r.T.contiguous().T if isinstance(A_r, torch.Tensor) else np.asfortranarray(A_r)
        path = ShardedRidgePath(A_r, w_bar[a:b], k, alpha_local=None if alpha is None
                                else alpha[a:b], threads=1)
        out[name] = [(res.w, res.objective) for res in map(path.solve, RIDGE_LAMS)]
        out[name + "-woodbury"] = path.woodbury
    return out


def _worker(rank, world, port, tmpdir, cases, trained):
    init_gloo(rank, world, port)
    results = {}
    for part, run in (("ridge", lambda: _rank_ridge(rank, world)),
                      ("cases", lambda: _rank_cases(cases, trained)),
                      ("checks", lambda: _rank_checks(rank, world, tmpdir, trained))):
        t0 = time.perf_counter()
        try:
            results[part] = run()
        except Exception:  # noqa: BLE001 - reported by the test that reads this part
            results[part] = traceback.format_exc()
        results[part + "_seconds"] = time.perf_counter() - t0
    save_rank_results(tmpdir, rank, results)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def groups(tmp_path_factory):
    """``groups(R)``: (R, per-rank results, tmpdir) of the R-rank group, run once."""
    done = {}

    def get(world):
        if world not in done:
            tmpdir = tmp_path_factory.mktemp(f"prune{world}")
            cases = {k: CASES[k] for k in CASES_FOR[world]}
            done[world] = (world, run_group(_worker, world, tmpdir, cases, _trained()), tmpdir)
        return done[world]
    return get


@pytest.fixture(params=[2, 3], ids=["R=2", "R=3"])
def group(request, groups):
    return groups(request.param)


@pytest.fixture(scope="module")
def single():
    """Single-process prune of every case (the reference), computed once."""
    states, batches, test = _trained()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {key: _prune(states, batches, test, case)
                for key, case in CASES.items()}
    finally:
        torch.set_num_threads(threads)


def _part(results, part):
    for r, res in enumerate(results):
        if isinstance(res[part], str):
            pytest.fail(f"rank {r} failed in {part}:\n{res[part]}")
    return [res[part] for res in results]


# ---- the tests --------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(RIDGE))
def test_sharded_ridge_path_matches_ridge_path(group, name):
    """ShardedRidgePath == chita_ext.RidgePath on the concatenated A for several lam: both
    regimes (Woodbury k > n, and k <= n), alpha, bfloat16 A, unequal shards."""
    from chita_ext.ridge_path import RidgePath

    world, results, _ = group
    parts = _part(results, "ridge")
    A, w_bar, k, alpha = _ridge_instance(*RIDGE[name])
    ref = RidgePath(A, w_bar, k, alpha=alpha, threads=1)
    assert parts[0][name + "-woodbury"] == (k > A.shape[0])
    for i, lam in enumerate(RIDGE_LAMS):
        want = ref.solve(lam)
        w = np.concatenate([p[name][i][0] for p in parts])
        f = parts[0][name][i][1]
        np.testing.assert_array_equal(np.flatnonzero(w), np.flatnonzero(want.w))
        np.testing.assert_allclose(w, want.w, rtol=1e-5, atol=1e-6 * np.abs(want.w).max())
        assert abs(f - want.objective) <= 1e-6 * abs(want.objective), (name, lam)
        assert all(p[name][i][1] == f for p in parts)  # global, the same on every rank


def _same_decisions(st, st_ref, key):
    for field in ("sparsity", "k", "winner", "bn"):
        assert st.get(field) == st_ref.get(field), (key, st["stage"], field)
    if st_ref.get("lam_rel") is not None:  # a grid point; lam / ||A||_F^2 for a fixed lam
        assert st["lam_rel"] == pytest.approx(st_ref["lam_rel"], rel=1e-6), key
    assert [r for r, _ in st.get("lam_tried", [])] == \
        [r for r, _ in st_ref.get("lam_tried", [])]
    for field in ("heldout_loss", "objective", "mp_heldout_loss"):
        if st_ref.get(field) is not None:
            assert st[field] == pytest.approx(st_ref[field], rel=1e-4), (key, field)
    assert st.get("fisher", {}).get("temperature") == \
        st_ref.get("fisher", {}).get("temperature")


def _same_on_every_rank(parts, key):
    got = parts[0][key]
    for other in parts[1:]:  # every rank holds the same model, bitwise
        for name, t in got["state"].items():
            assert torch.equal(other[key]["state"][name], t), (key, name)
    assert all(st["ranks_differed"] is False for st in got["stages"])


def _case(results, world, key):
    parts = _part(results, "cases")
    for r, part in enumerate(parts):
        if isinstance(part[key], str):
            pytest.fail(f"R={world} rank {r} failed in {key}:\n{part[key]}")
    return parts


def _ids(pairs):
    return [f"R={w}-{k}" for w, k in pairs]


@pytest.mark.parametrize("world,key", [p for p in PAIRS if p[1] not in GRADUAL],
                         ids=_ids([p for p in PAIRS if p[1] not in GRADUAL]))
def test_prune_matches_single_process(groups, single, world, key):
    """Same masks and per-stage decisions as single-process prune, weights to rounding,
    the model bitwise identical on every rank after every stage."""
    _, results, _ = groups(world)
    parts = _case(results, world, key)
    ref, got = single[key], parts[0][key]
    # The decisions first: a different one explains a different mask.
    assert got["guard"] == ref["guard"]
    assert len(got["stages"]) == len(ref["stages"])
    for st, st_ref in zip(got["stages"], ref["stages"]):
        _same_decisions(st, st_ref, key)
    for name in ref["masks"]:
        np.testing.assert_array_equal(got["masks"][name], ref["masks"][name],
                                      err_msg=f"R={world} {key} mask {name}")
    scale = float(np.abs(ref["w"]).max())
    # bfloat16 A: a gradient summed in another order can round to the neighbouring bf16
    rtol = 1e-3 if CASES[key][1].get("dtype") == "bfloat16" else 1e-4
    np.testing.assert_allclose(got["w"], ref["w"], rtol=rtol, atol=10 * rtol * scale,
                               err_msg=f"R={world} {key} weights")
    if ref["metrics"]:
        assert got["metrics"]["before"] == ref["metrics"]["before"]  # same weights: exact
        assert got["metrics"]["after"]["accuracy"] == ref["metrics"]["after"]["accuracy"]
        assert got["metrics"]["after"]["loss"] == pytest.approx(
            ref["metrics"]["after"]["loss"], rel=1e-5)
    _same_on_every_rank(parts, key)
    d = got["distributed"]
    assert d["ranks"] == world and d["rank"] == 0
    assert [p[key]["distributed"]["rank"] for p in parts] == list(range(world))


@pytest.mark.parametrize("world,key", [p for p in PAIRS if p[1] in GRADUAL],
                         ids=_ids([p for p in PAIRS if p[1] in GRADUAL]))
def test_gradual_pruning_finetunes_under_ddp(groups, single, world, key):
    """finetune_steps > 0: DDP after every stage; the first stage's decisions are the
    single-process ones, the masks hold exactly k weights and stay enforced, and the model
    (BatchNorm statistics included) is bitwise the same on every rank after every stage."""
    _, results, _ = groups(world)
    parts = _case(results, world, key)
    ref, got = single[key], parts[0][key]
    _same_decisions(got["stages"][0], ref["stages"][0], key)
    assert sum(int(m.sum()) for m in got["masks"].values()) == got["k"] == ref["k"]
    for name, m in got["masks"].items():
        assert (got["state"][name][~torch.from_numpy(m)] == 0).all()
    assert got["timings"]["finetune"] > 0
    assert not np.array_equal(got["w"], ref["w"])  # R batches per step: another path
    _same_on_every_rank(parts, key)


def test_stage_communication(group):
    """Per bso stage and rank: the all-to-all sends this rank's rows once (4 bytes per
    value) plus p float64 column sums; the n x n Gram is all-reduced once (not per lam);
    each lam tried gathers the weights (4 bytes) and the support (1 byte) per weight; A
    itself is never gathered."""
    from chita_ext.distributed.layout import balanced_ranges

    world, results, _ = group
    parts = _part(results, "cases")
    n, p = COMMON["n_samples"], 64 * 32 + 32 * 10
    rows = balanced_ranges(n, world)
    widest = max(b - a for a, b in balanced_ranges(p, world))
    for r, part in enumerate(parts):
        stage = part["bso"]["stages"][0]
        assert stage["k"] > n  # the Woodbury regime: an n x n Gram
        comm = stage["comm_bytes"]
        assert comm["all_to_all"] == 4 * (rows[r][1] - rows[r][0]) * p + 8 * p
        assert comm["all_gather"] == len(stage["lam_tried"]) * 5 * widest
        assert 8 * n * n <= comm["all_reduce"] < 2 * 8 * n * n


def test_bad_input_raises_on_every_rank(group):
    world, results, _ = group
    checks = _part(results, "checks")
    for r, c in enumerate(checks):
        assert c["swap"] is not None and c["swap"][0] == "ValueError", (r, c["swap"])
        assert "does not run under torch.distributed" in c["swap"][1]
        assert "choose one of mp, bso, iht, active, block" in c["swap"][1]
        assert c["disagree"] is not None and c["disagree"][0] == "ValueError"
        assert "different arguments on different ranks" in c["disagree"][1]


def test_ranks_start_from_rank0_weights(group):
    """A rank whose weights differ is given rank 0's before any work (as DDP does): the
    result is that of the unperturbed model, the same on every rank."""
    world, results, _ = group
    checks = _part(results, "checks")
    states, batches, _ = _trained()
    torch.set_num_threads(1)
    ref = prune(_model(states, "mlp"), LOSS, batches, 0.8, stages=1, **COMMON)
    want = select_params(ref.model).flatten()
    for c in checks:
        np.testing.assert_array_equal(c["perturbed"] != 0, want != 0)
        np.testing.assert_array_equal(c["perturbed"], checks[0]["perturbed"])
        assert c["sync_again"] is False


def test_save_pruned_writes_once(group):
    world, results, tmpdir = group
    checks = _part(results, "checks")
    assert [c["save_calls"] for c in checks] == [1] + [0] * (world - 1)
    import json
    report = json.loads((tmpdir / "saved" / "report.json").read_text())
    assert report["distributed"]["ranks"] == world and report["distributed"]["rank"] == 0
    assert sorted(p.name for p in tmpdir.iterdir() if p.name.startswith(".")) == []


def test_cli_model_run_inside_a_group_writes_once(group):
    """chita-prune --model in every rank of a group: exit 0 everywhere, the summary printed
    and the output directory written by rank 0 only, the caller's group left alone."""
    import json

    world, results, tmpdir = group
    checks = _part(results, "checks")
    assert [c["cli_rc"] for c in checks] == [0] * world
    assert "global sparsity 0.6" in checks[0]["cli_stdout"]
    assert [c["cli_stdout"] for c in checks[1:]] == [""] * (world - 1)
    assert all(c["cli_group_kept"] for c in checks)
    report = json.loads((tmpdir / "cli" / "report.json").read_text())
    assert report["distributed"]["ranks"] == world and abs(report["sparsity"] - 0.6) < 1e-3
    assert sorted(p.name for p in (tmpdir / "cli").iterdir()) == \
        ["masks.safetensors", "model.safetensors", "report.json", "summary.md"]


def test_memory_mapped_gradients_one_file_per_rank(group):
    from chita_ext.distributed.layout import balanced_ranges

    world, results, tmpdir = group
    checks = _part(results, "checks")
    cols = balanced_ranges(64 * 32 + 32 * 10, world)
    assert [c["memmap"] for c in checks] == [(b - a, COMMON["n_samples"]) for a, b in cols]
    assert not (tmpdir / "A.npy").exists()


def test_ddp_finetune_is_one_step_on_the_merged_batches(group):
    """DDP over R ranks (rank r takes batches r, r + R, ...) = one process fine-tuning on
    the concatenation of every R consecutive batches; masks kept; ranks identical."""
    world, results, _ = group
    checks = _part(results, "checks")
    states, batches, _ = _trained()
    merged = [(torch.cat([x for x, _ in batches[i:i + world]]),
               torch.cat([y for _, y in batches[i:i + world]]))
              for i in range(0, world * FINETUNE_STEPS, world)]
    model = _model(states, "mlp")
    masks = checks[0]["ddp_masks"]
    finetune(model, LOSS, merged, masks, FINETUNE_STEPS, lr=0.05)
    for c in checks:
        for name, t in model.state_dict().items():
            torch.testing.assert_close(c["ddp_state"][name], t, rtol=1e-5, atol=1e-6)
            assert torch.equal(c["ddp_state"][name], checks[0]["ddp_state"][name])
        for name, m in masks.items():
            assert (c["ddp_state"][name][~m] == 0).all()
    changed = any(not torch.equal(checks[0]["ddp_state"][n], states["mlp"][n] * masks[n])
                  for n in masks)
    assert changed
    model.zero_grad()
    LOSS(model(batches[0][0]), batches[0][1]).backward()
    torch.testing.assert_close(checks[0]["plain_grad"], model[0].weight.grad, rtol=1e-4,
                               atol=1e-6)
