"""chita_ext.distributed on real multi-process gloo groups (2 and 3 ranks on localhost).

Each group is started once (tests/multiproc.py: forkserver with torch preloaded) and runs
every check in one go; the tests below read its results and compare them, in this
process, with the single-process functions on the concatenated inputs. A hang fails: the
process group has a 60 s timeout and the group as a whole is killed after
multiproc.GROUP_TIMEOUT seconds.
"""
from __future__ import annotations

import functools
import os
import time
import traceback

import numpy as np
import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available():
    pytest.skip("torch.distributed is not available in this torch build", allow_module_level=True)

import chita_ext
from chita_ext.distributed.layout import balanced_ranges
from conftest import make_instance
from multiproc import init_gloo, run_group, save_rank_results
# Unequal shards, p = 203 divisible by neither 2 nor 3.
P = 203
SHARDS = {2: [120, 83], 3: [50, 100, 53]}
N = 24
METHODS = ["mp", "bso", "iht", "active", "block"]
# One OpenMP thread: on an oversubscribed runner a multi-threaded region waits for
# descheduled threads, which only slows the tiny solves down.
SOLVE_OPTIONS = {"max_iter": 12, "tol": 1e-6, "threads": 1}


# ---- instances (built here, shipped to the ranks) ---------------------------------------
def _rel_lam(A, rel=1e-2):
    return rel * float(np.sum(A.astype(np.float64) ** 2)) / A.shape[1]


def _select_vectors():
    rng = np.random.default_rng(7)
    ties = (rng.integers(-3, 4, P) / 2).astype(np.float32)   # many ties, zeros, -0.0
    ties[::17] = -0.0
    low_bits = np.float32(1.5) + np.arange(P, dtype=np.float32) % 5 * np.float32(2.0**-22)
    low_bits *= np.where(np.arange(P) % 2 == 0, 1.0, -1.0).astype(np.float32)
    return {
        "random": rng.standard_normal(P).astype(np.float32),
        "ties": ties,
        "zeros": np.zeros(P, np.float32),
        "low_bits": low_bits.astype(np.float32),   # differ only in the last mantissa bits
    }


SELECT_KS = [1, 2, 37, 50, 101, 150, P - 1, P]


def _bf16(A):
    """A (numpy float32, column-major) as a column-major torch bfloat16 tensor."""
    return torch.from_numpy(np.ascontiguousarray(A.T)).to(torch.bfloat16).T


def solve_cases(world):
    """name -> (A, w_bar, k, kwargs). A is numpy f32 (col- or row-major) or torch bf16.

    Both group sizes run every method on float32 and bfloat16 A (k > n) and the blocks
    that cross shard boundaries; the 2-rank group also runs k <= n, alpha, w0, lam = 0,
    row-major A, k = 1 and k = p, and real gradients (the 3-rank group shares 2 cores).
    """
    A, w_bar = make_instance("gaussian", N, P, seed=1)
    lam = _rel_lam(A)
    cases = {}
    for m in METHODS:
        cases[f"{m}-f32-k40"] = (A, w_bar, 40, {"lam": lam, "method": m})      # k > n
        cases[f"{m}-bf16-k40"] = (_bf16(A), w_bar, 40, {"lam": lam, "method": m})
    # Layer edges that cross every shard boundary, plus blocks inside shards.
    cases["block-layers"] = (A, w_bar, 40, {"lam": lam, "method": "block",
                                            "blocks": [45, 110, 160]})
    if world > 2:
        return cases
    Ac, wc = make_instance("correlated", N, P, seed=2)
    Ah, wh = make_instance("heavy", N, P, seed=3)
    alpha = (np.random.default_rng(4).standard_normal(P) * 0.1).astype(np.float32)
    w0 = np.random.default_rng(5).standard_normal(P).astype(np.float32)
    for m in METHODS:
        cases[f"{m}-f32-k10"] = (A, w_bar, 10, {"lam": lam, "method": m})      # k <= n
        cases[f"{m}-alpha-k40"] = (Ac, wc, 40, {"lam": _rel_lam(Ac), "method": m, "alpha": alpha})
    cases["iht-heavy-k30"] = (Ah, wh, 30, {"lam": _rel_lam(Ah, 1e-1), "method": "iht"})
    cases["iht-rowmajor-k40"] = (np.ascontiguousarray(A), w_bar, 40, {"lam": lam, "method": "iht"})
    cases["iht-w0-k40"] = (A, w_bar, 40, {"lam": lam, "method": "iht", "w0": w0})
    cases["bso-w0-lam0-k10"] = (A, w_bar, 10, {"lam": 0.0, "method": "bso", "w0": w0})
    cases["iht-k=p"] = (A, w_bar, P, {"lam": lam, "method": "iht"})
    cases["iht-k=1"] = (A, w_bar, 1, {"lam": lam, "method": "iht"})
    cases["iht-time-limit"] = (A, w_bar, 40, {"lam": lam, "method": "iht", "time_limit": 1e-9})
    cases["block-size"] = (A, w_bar, 40, {"lam": lam, "method": "block", "blocks": [90],
                                          "block_size": 32})
    G, wg = _mlp_gradients()
    for m in METHODS:
        cases[f"{m}-mlp-gradients"] = (G, wg, 60, {"lam": _rel_lam(G), "method": m,
                                                   "block_size": 64})
    return cases


def _mlp():
    return torch.nn.Sequential(torch.nn.Linear(20, 12), torch.nn.ReLU(), torch.nn.Linear(12, 5))


@functools.lru_cache(maxsize=1)
def _mlp_and_data():
    """A small MLP (p = 240 + 60 prunable weights), briefly trained, and its data."""
    gen = torch.Generator().manual_seed(4)
    X = torch.randn(64, 20, generator=gen)
    y = (X[:, :5].argmax(1) + (X[:, 5] > 1).long()) % 5  # learnable labels
    torch.manual_seed(3)
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(15):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    batches = [(X[i:i + 8], y[i:i + 8]) for i in range(0, 64, 8)]
    return model, batches


def _mlp_gradients():
    """Real per-sample gradients (n = 48 rows, p = 300) and the weights, single process."""
    model, batches = _mlp_and_data()
    store = chita_ext.collect_gradients(model, torch.nn.CrossEntropyLoss(), batches, 48)
    w_bar = torch.cat([p.detach().reshape(-1) for p in (model[0].weight, model[2].weight)])
    return np.asfortranarray(store.A), w_bar.numpy().astype(np.float32)


GRADIENT_CASES = {  # name -> collect_gradients options (n_samples, batch_rows, dtype, chunk)
    "f32": {"n_samples": 23, "batch_rows": 1, "dtype": "float32", "chunk": 4},
    "bf16-batch2": {"n_samples": 23, "batch_rows": 2, "dtype": "bfloat16", "chunk": 3},
}


# ---- what each rank runs ----------------------------------------------------------------
def shard_bounds(p, world, rank):
    """Rank's global columns: SHARDS[world]'s unequal pattern scaled to p columns."""
    cuts = [0] + [round(c * p / P) for c in np.cumsum(SHARDS[world])[:-1]] + [p]
    return cuts[rank], cuts[rank + 1]


def _slice(x, a, b):
    return None if x is None else x[a:b]


def _rank_solves(rank, world, cases):
    import chita_ext.distributed as D

    out = {}
    for name, (A, w_bar, k, kw) in cases.items():
        a, b = shard_bounds(A.shape[1], world, rank)
        kw = dict(kw)
        for key in ("alpha", "w0"):
            kw[key] = _slice(kw.get(key), a, b)
        A_local = A[:, a:b]
        if isinstance(A_local, np.ndarray):
            A_local = np.asfortranarray(A_local) if A.flags.f_contiguous else \
                np.ascontiguousarray(A_local)
        else:
            A_local = A_local.T.contiguous().T
        res = D.solve(A_local, w_bar[a:b], k, **kw, **SOLVE_OPTIONS)
        out[name] = {"w": res.w, "support": res.support, "objective": res.objective,
                     "history": res.history, "iterations": res.iterations, "info": res.info,
                     "seconds": res.seconds}
    return out


def _rank_selects(rank, world, vectors):
    import chita_ext.distributed as D

    a, b = shard_bounds(P, world, rank)
    out = {}
    for name, x in vectors.items():
        for k in SELECT_KS:
            out[(name, k, 11)] = D.topk_abs(x[a:b], k) + a
        out[(name, 37, 3)] = D.topk_abs(torch.from_numpy(x[a:b]), 37, radix_bits=3).numpy() + a
    return out


def _rank_errors(rank, world):
    """Bad input must raise on every rank, with the same kind of error, and never hang."""
    import chita_ext.distributed as D

    A, w_bar = make_instance("gaussian", N, P, seed=1)
    a, b = shard_bounds(P, world, rank)
    A_r, w_r = np.asfortranarray(A[:, a:b]), w_bar[a:b]
    bad_w = w_r.copy()
    if rank == world - 1:
        bad_w[0] = np.nan  # only the last rank has bad input
    attempts = {
        "greedy": lambda: D.solve(A_r, w_r, 10, lam=1.0, method="greedy"),
        "k>p": lambda: D.solve(A_r, w_r, P + 1, lam=1.0, method="iht"),
        "nan-one-rank": lambda: D.solve(A_r, bad_w, 10, lam=1.0, method="iht"),
        "f64-one-rank": lambda: D.solve(A_r.astype(np.float64) if rank == 0 else A_r, w_r, 10,
                                        lam=1.0, method="mp"),
        "lam-differs": lambda: D.solve(A_r, w_r, 10, lam=1.0 + rank, method="mp"),
        "block-rowmajor": lambda: D.solve(np.ascontiguousarray(A_r), w_r, 10, lam=1.0,
                                          method="block"),
        "topk-nan": lambda: D.topk_abs(bad_w, 3),
        "topk-k": lambda: D.topk_abs(w_r, P + 1),
    }
    out = {}
    for name, call in attempts.items():
        try:
            call()
            out[name] = None
        except Exception as exc:  # noqa: BLE001 - the test inspects the type and message
            out[name] = (type(exc).__name__, str(exc))
    return out


def _rank_gradients(rank, world, tmpdir, trained):
    import chita_ext.distributed as D

    state, batches = trained  # trained once in the test process (training is slow to start)
    model = _mlp()
    model.load_state_dict(state)
    out = {}
    for name, kw in GRADIENT_CASES.items():
        s = D.collect_gradients(model, torch.nn.CrossEntropyLoss(), batches, **kw)
        out[name] = {"A": np.asarray(s.A_local.float() if isinstance(s.A_local, torch.Tensor)
                                     else s.A_local), "range": s.column_range,
                     "mean": s.mean_grad, "scale": s.scale, "p_total": s.p_total,
                     "n": s.n}
    # Each rank's own samples only (rows in rank order), into a memory-mapped file.
    rows = balanced_ranges(23, world)[rank]  # n_samples = 23, one sample per row
    X = torch.cat([x for x, _ in batches])[rows[0]:rows[1]]
    y = torch.cat([t for _, t in batches])[rows[0]:rows[1]]
    s = D.collect_gradients(model, torch.nn.CrossEntropyLoss(), [(X, y)], 23, chunk=2,
                            sharded_data=True, out=os.path.join(tmpdir, f"g{rank}.npy"))
    out["sharded-data"] = {"A": np.asarray(s.A_local), "range": s.column_range,
                           "mean": s.mean_grad, "scale": s.scale, "p_total": s.p_total,
                           "n": s.n}
    return out


def _worker(rank, world, port, tmpdir, solve_inputs, select_inputs, trained):
    init_gloo(rank, world, port)
    results = {}
    for part, run in (("select", lambda: _rank_selects(rank, world, select_inputs)),
                      ("solve", lambda: _rank_solves(rank, world, solve_inputs)),
                      ("errors", lambda: _rank_errors(rank, world)),
                      ("gradients", lambda: _rank_gradients(rank, world, tmpdir, trained))):
        t0 = time.perf_counter()
        try:
            results[part] = run()
        except Exception:  # noqa: BLE001 - reported by the test that reads this part
            results[part] = traceback.format_exc()
        results[part + "_seconds"] = time.perf_counter() - t0
    save_rank_results(tmpdir, rank, results)
    dist.destroy_process_group()


@pytest.fixture(scope="module", params=[2, 3], ids=["R=2", "R=3"])
def group(request, tmp_path_factory):
    """(world, per-rank results, (solve cases, select vectors)) of one group run."""
    world = request.param
    model, batches = _mlp_and_data()
    inputs = (solve_cases(world), _select_vectors(), (model.state_dict(), batches))
    return world, run_group(_worker, world, tmp_path_factory.mktemp(f"group{world}"),
                            *inputs), inputs


def _part(results, part):
    for r, res in enumerate(results):
        if isinstance(res[part], str):
            pytest.fail(f"rank {r} failed in {part}:\n{res[part]}")
    return [res[part] for res in results]


# ---- the tests --------------------------------------------------------------------------
def test_topk_matches_single_process(group):
    """Distributed select == kernels.topk_abs on the concatenation: ties across shard
    edges, zeros, -0.0, low-bit differences, k = 1 .. p, and 3-bit passes."""
    world, results, (_, vectors, _) = group
    parts = _part(results, "select")
    for key in parts[0]:
        name, k, _ = key
        got = np.concatenate([p[key] for p in parts])
        want = chita_ext.kernels.topk_abs(vectors[name], k)
        np.testing.assert_array_equal(got, want, err_msg=f"R={world} {key}")


def _concat_w(parts, name):
    return np.concatenate([p[name]["w"] for p in parts])


def test_methods_match_single_process(group):
    """Every method: same support and objective within 1e-6 relative as chita_ext.solve on
    the concatenated A (same options); float32 and bfloat16, col- and row-major, alpha,
    w0, k <= n and k > n, real gradients; global fields the same on every rank."""
    world, results, (cases, _, _) = group
    parts = _part(results, "solve")
    failures = []
    for name, (A, w_bar, k, kw) in cases.items():
        ref = chita_ext.solve(A, w_bar, k, **kw, **SOLVE_OPTIONS)
        support = np.concatenate([p[name]["info"]["global_support"] for p in parts])
        local = np.concatenate([p[name]["support"] + p[name]["info"]["column_range"][0]
                                for p in parts])
        f = parts[0][name]["objective"]
        if not np.array_equal(support, ref.support) or not np.array_equal(local, support):
            failures.append(f"{name}: support differs")
        elif abs(f - ref.objective) > 1e-6 * abs(ref.objective):
            failures.append(f"{name}: objective {f} vs {ref.objective}")
        elif parts[0][name]["iterations"] != ref.iterations:
            failures.append(f"{name}: {parts[0][name]['iterations']} iterations vs "
                            f"{ref.iterations}")
        w = _concat_w(parts, name)
        scale = float(np.abs(ref.w).max())
        if not np.allclose(w, ref.w, rtol=1e-4, atol=1e-5 * scale):
            failures.append(f"{name}: w differs by {np.abs(w - ref.w).max()}")
        for p in parts[1:]:  # global fields agree on every rank
            assert p[name]["objective"] == f
            np.testing.assert_array_equal(p[name]["history"], parts[0][name]["history"])
        assert parts[0][name]["info"]["support_size"] == len(ref.support)
        assert parts[0][name]["info"]["p"] == A.shape[1]
    assert not failures, f"R={world}: " + "; ".join(failures)


def test_iht_communication_is_n_sized(group):
    """Inside the IHT loop only n-vectors, scalars and top-k histograms move: per iteration
    the bytes are bounded by O(n + histogram) with no term in p, and every top-k pass
    moves exactly one 2**8-bin int64 histogram."""
    world, results, _ = group
    parts = _part(results, "solve")
    for name in ("iht-f32-k40", "iht-bf16-k40"):
        for p in parts:
            res = p[name]
            comm, iters = res["info"]["iteration_comm"], max(1, res["iterations"])
            assert set(comm["bytes"]) <= {"all_reduce", "topk_histogram", "topk_ties"}
            assert comm["bytes"]["topk_histogram"] == 8 * 2**8 * comm["calls"]["topk_histogram"]
            trials = 10 + 2  # at most max_doublings + 1 support-changing trials and a 1/L one
            # gradient: n + 1 doubles, M, tau_chg; a support step: 3 doubles; each trial:
            # at most 4 histogram passes, R tie counts and 2n + 3 doubles.
            bound = 8 * (N + 3) + 24 + trials * (4 * 8 * 2**8 + 8 * world + 8 * (2 * N + 3))
            assert 0 < comm["total_bytes"] / iters <= bound, (name, comm)


def test_bad_input_raises_on_every_rank(group):
    world, results, _ = group
    parts = _part(results, "errors")
    want = {"greedy": ("ValueError", "choose one of mp, bso, iht, active, block"),
            "k>p": ("ValueError", f"k={P + 1} must be in [1, p={P}]"),
            "nan-one-rank": ("ValueError", "NaN or Inf"),
            "f64-one-rank": ("TypeError", "float64"),
            "lam-differs": ("ValueError", "ranks disagree"),
            "block-rowmajor": ("ValueError", "column-major"),
            "topk-nan": ("ValueError", "NaN or Inf"),
            "topk-k": ("ValueError", "must be an int in [1, p=")}
    for name, (kind, text) in want.items():
        for r, p in enumerate(parts):
            assert p[name] is not None, f"R={world} rank {r}: {name} did not raise"
            assert p[name][0] == kind and text in p[name][1], (name, r, p[name])


@pytest.mark.parametrize("case", list(GRADIENT_CASES) + ["sharded-data"])
def test_sharded_gradients_match_single_process(group, case):
    """Each rank's column block (rows exchanged in chunks by all-to-all) equals the same
    columns of the single-process store; mean_grad slice, scale and ranges too."""
    world, results, _ = group
    parts = _part(results, "gradients")
    model, batches = _mlp_and_data()
    kw = GRADIENT_CASES.get(case, {"n_samples": 23})
    kw = {k: v for k, v in kw.items() if k != "chunk"}
    ref = chita_ext.collect_gradients(model, torch.nn.CrossEntropyLoss(), batches, **kw)
    A = np.asarray(ref.A.float() if isinstance(ref.A, torch.Tensor) else ref.A)
    assert [p[case]["range"] for p in parts] == balanced_ranges(ref.p, world)
    for p in parts:
        a, b = p[case]["range"]
        assert p[case]["p_total"] == ref.p and p[case]["n"] == ref.n
        assert p[case]["scale"] == ref.scale
        if kw.get("dtype") == "bfloat16":  # one bf16 rounding step apart at most
            np.testing.assert_allclose(p[case]["A"], A[:, a:b], rtol=2**-7, atol=1e-7)
        else:
            np.testing.assert_allclose(p[case]["A"], A[:, a:b], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(p[case]["mean"], ref.mean_grad[a:b], rtol=1e-5, atol=1e-8)
    assert np.abs(A).max() > 0  # not a test on zeros
