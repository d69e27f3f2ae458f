"""prune() end to end on real data (scikit-learn digits, MLP trained here) and its checks."""
import copy
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from chita_ext.datasets import digits_loaders  # noqa: E402
from chita_ext.models import MLPNet, SmallCNN  # noqa: E402
from chita_ext.pruning import prune  # noqa: E402

LOSS = torch.nn.CrossEntropyLoss()


@pytest.fixture(scope="module")
def trained():
    """A 64-64-32-10 MLP trained on digits (about 1 s), and its loaders."""
    torch.manual_seed(2)
    train, test = digits_loaders(batch_size=64, seed=2)
    model = MLPNet(64, (64, 32), 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: one thread is fastest and immune to busy cores
    try:
        for _ in range(30):
            for x, y in train:
                opt.zero_grad()
                LOSS(model(x), y).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval(), train, test


def _acc(model, train, test, s, **kw):
    res = prune(copy.deepcopy(model), LOSS, train, s, eval_data=test, threads=1, **kw)
    return res.metrics["after"]["accuracy"], res


def test_defaults_beat_magnitude_and_chitapp_no_worse(trained):
    model, train, test = trained
    s = 0.85
    acc_mp, r_mp = _acc(model, train, test, s, method="mp")
    acc_c, r_c = _acc(model, train, test, s, n_samples=400, stages=1)
    acc_pp, r_pp = _acc(model, train, test, s, n_samples=400)  # defaults: CHITA++
    assert r_c.metrics["before"]["accuracy"] > 0.9
    assert acc_c > acc_mp + 0.05, (acc_mp, acc_c)
    assert acc_pp >= acc_c - 0.01, (acc_c, acc_pp)
    assert len(r_pp.stages) == 13 and r_pp.stages[-1]["sparsity"] == s  # auto: 13 at 85%
    for r in (r_mp, r_c, r_pp):
        nnz = sum(int(m.sum()) for m in r.masks.values())
        assert nnz == r.k == round(0.15 * r.p)
        for name, prm in r.model.named_parameters():
            if name in r.masks:
                assert (prm[~r.masks[name]] == 0).all()
    for st in r_pp.stages:
        assert st["winner"] in ("bso", "mp") and st["lam_tried"]
        assert st["fisher"]["effective_rows"] > 0
    assert r_pp.timings["solve"] > 0 and r_pp.timings["lam_search"] > 0


def test_exactly_k_survive_and_report(trained):
    model, train, _ = trained
    res = prune(copy.deepcopy(model), LOSS, train, 0.7, n_samples=300, lam="auto",
                lam_grid=(1e-3, 1e-1), stages=1, threads=1, progress=False)
    assert sum(int(m.sum()) for m in res.masks.values()) == res.k == round(0.3 * res.p)
    assert abs(res.sparsity - 0.7) < 1e-3
    assert res.lam_rel in (1e-3, 1e-1) and res.lam > 0 and np.isfinite(res.objective)
    assert [r for r, _ in res.stages[0]["lam_tried"]] == [1e-3, 1e-1]
    assert set(res.densities) == set(res.masks) and "heldout_loss" in res.stages[0]
    rep = res.report()
    assert rep["k"] == res.k and rep["timings"]["total"] >= rep["timings"]["solve"] > 0
    assert rep["guard"] in ("chita", "mp")


def test_guard_returns_magnitude_weights_when_the_solver_loses(trained, monkeypatch):
    """A solver whose answers are worse than magnitude pruning must lose to it everywhere."""
    import chita_ext.ridge_path as rp
    from chita_ext.params import magnitude_masks, select_params
    model, train, _ = trained
    real = rp.RidgePath.solve

    def sabotaged(self, lam):
        res = real(self, lam)
        res.w[res.support] *= -3.0  # flipped, blown-up weights: far worse held-out loss
        return res
    monkeypatch.setattr(rp.RidgePath, "solve", sabotaged)
    dense = copy.deepcopy(model)
    res = prune(copy.deepcopy(model), LOSS, train, 0.8, n_samples=200, stages=3, threads=1,
                progress=False)
    assert [st["winner"] for st in res.stages] == ["mp"] * 3
    sel = select_params(dense)
    want = magnitude_masks(sel, res.k)  # magnitude of magnitude... = one-shot magnitude
    np.testing.assert_array_equal(select_params(res.model).flatten(), want)


def test_guard_keeps_one_shot_magnitude_against_the_whole_path(trained, monkeypatch):
    """Per stage the guard compares with magnitude pruning of that stage's weights; at the
    end with one-shot magnitude pruning of the dense model."""
    import chita_ext.stage as stage_mod
    from chita_ext.params import magnitude_masks, select_params
    model, train, _ = trained
    dense = copy.deepcopy(model)
    monkeypatch.setattr(stage_mod, "magnitude_masks",
                        lambda sel, k: magnitude_masks(sel, k) * 0.0)  # a useless "mp" per stage

    def sabotaged(self, lam):
        res = real(self, lam)
        res.w[res.support] *= -3.0
        return res
    import chita_ext.ridge_path as rp
    real = rp.RidgePath.solve
    monkeypatch.setattr(rp.RidgePath, "solve", sabotaged)
    res = prune(copy.deepcopy(model), LOSS, train, 0.8, n_samples=200, stages=2, threads=1,
                progress=False)
    assert res.guard == "mp"
    want = magnitude_masks(select_params(dense), res.k)
    np.testing.assert_array_equal(select_params(res.model).flatten(), want)


def test_time_budget_is_honoured(trained):
    """400 stages asked for (many times what fits), 6 s allowed: the plan is cut so that
    the call ends in time."""
    model, train, _ = trained
    t0 = time.perf_counter()
    res = prune(copy.deepcopy(model), LOSS, train, 0.9, n_samples=300, stages=400,
                time_budget=6.0, threads=1, progress=False)
    wall = time.perf_counter() - t0
    assert wall <= 1.2 * 6.0, wall
    assert 1 <= len(res.stages) < 400 and res.stages[-1]["sparsity"] == 0.9
    assert abs(res.sparsity - 0.9) < 1e-3


def test_bn_cnn_grad_term_bf16(trained):
    _, train, _ = trained
    torch.manual_seed(0)
    model = SmallCNN(8, channels=(4, 8))
    model.train()
    for x, _ in train:
        model(x)
    model.eval()
    bn = model.features[1]
    before = bn.running_mean.clone()
    res = prune(model, LOSS, train, 0.5, n_samples=128, lam=1e-3, grad_term=True,
                dtype="bfloat16", max_iter=20, threads=1, bn_samples=256, progress=False)
    # Re-estimated statistics are kept only when they lower the held-out loss.
    changed = not torch.allclose(bn.running_mean, before)
    assert changed == any(st["bn"] == "recalibrated" for st in res.stages)
    assert all(st["bn"] in ("recalibrated", "kept") for st in res.stages)
    assert sum(int(m.sum()) for m in res.masks.values()) <= res.k
    assert (model.features[0].weight[~res.masks["features.0.weight"]] == 0).all()


def test_bn_recalibration_kept_only_when_it_helps(trained, monkeypatch):
    import chita_ext.stage as stage_mod
    _, train, _ = trained
    torch.manual_seed(0)
    model = SmallCNN(8, channels=(4, 8)).eval()
    bn = model.features[1]

    def harmful(model, data, n_samples, stream):  # statistics that ruin the network
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.fill_(float("nan"))
    monkeypatch.setattr(stage_mod, "recalibrate_bn", harmful)
    before = bn.running_mean.clone()
    res = prune(model, LOSS, train, 0.5, n_samples=64, stages=2, threads=1, progress=False)
    assert [st["bn"] for st in res.stages] == ["kept", "kept"]
    assert torch.equal(bn.running_mean, before)


def test_mp_needs_no_gradients_and_skips_bn(trained, monkeypatch):
    import chita_ext.stage as stage_mod
    _, train, _ = trained
    model = SmallCNN(8, channels=(4, 8)).eval()
    monkeypatch.setattr(stage_mod, "collect_gradients", None)  # would fail if called
    monkeypatch.setattr(stage_mod, "recalibrate_bn", None)
    res = prune(model, LOSS, train, 0.5, method="mp", progress=False)
    assert len(res.stages) == 1 and res.stages[0]["winner"] == "mp"


@pytest.mark.parametrize("kwargs, match", [
    ({"sparsity": 1.0}, r"\[0, 1\)"),
    ({"sparsity": -0.1}, r"\[0, 1\)"),
    ({"n_samples": 10**6}, "n_samples <="),
    ({"stages": 0}, "stages"),
    ({"fisher": "true"}, "fisher"),
    ({"time_budget": -1}, "time_budget"),
    ({"lam_grid": ()}, "lam_grid"),
    ({"schedule": "cosine"}, "schedule"),
    ({"lam": -1.0}, "lam"),
    ({"loss_fn": torch.nn.CrossEntropyLoss(reduction="none")}, "not a scalar"),
    ({"model": torch.nn.Sequential(torch.nn.Flatten(), torch.nn.ReLU())}, "no prunable"),
])
def test_bad_input_raises_before_long_work(trained, monkeypatch, kwargs, match):
    model, train, _ = trained

    def no_solver():
        def fail(*a, **k):
            raise AssertionError("solver reached despite bad input")
        return fail
    import chita_ext.stage as stage_mod
    monkeypatch.setattr(stage_mod, "_solver", no_solver)
    monkeypatch.setattr(stage_mod, "collect_gradients", no_solver())
    args = {"model": copy.deepcopy(model), "loss_fn": LOSS, "sparsity": 0.5, "n_samples": 64}
    args.update(kwargs)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        prune(args.pop("model"), args.pop("loss_fn"), train, args.pop("sparsity"), **args)
    assert time.perf_counter() - t0 < 5
