"""prune() end to end on real data (scikit-learn digits, MLP trained here) and its checks."""
import copy
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

import chita_ext.pruning as prune_mod  # noqa: E402
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


def test_chita_beats_magnitude_and_chitapp_no_worse(trained):
    model, train, test = trained
    s = 0.85
    acc_mp, r_mp = _acc(model, train, test, s, method="mp")
    acc_c, r_c = _acc(model, train, test, s, method="iht", n_samples=1000, lam_grid=(1e-3,))
    acc_pp, r_pp = _acc(model, train, test, s, method="iht", n_samples=1000, lam_grid=(1e-3,),
                        stages=3)
    assert r_c.metrics["before"]["accuracy"] > 0.9
    assert acc_c > acc_mp + 0.1, (acc_mp, acc_c)
    assert acc_pp >= acc_c - 0.01, (acc_c, acc_pp)
    assert [st["sparsity"] for st in r_pp.stages][-1] == s and len(r_pp.stages) == 3
    for r in (r_mp, r_c, r_pp):
        nnz = sum(int(m.sum()) for m in r.masks.values())
        assert nnz == r.k == round(0.15 * r.p)
        for name, prm in r.model.named_parameters():
            if name in r.masks:
                assert (prm[~r.masks[name]] == 0).all()


def test_exactly_k_survive_and_report(trained):
    model, train, _ = trained
    res = prune(copy.deepcopy(model), LOSS, train, 0.7, n_samples=300, lam="auto",
                lam_grid=(1e-3, 1e-1), threads=1)
    assert sum(int(m.sum()) for m in res.masks.values()) == res.k == round(0.3 * res.p)
    assert abs(res.sparsity - 0.7) < 1e-3
    assert res.lam_rel in (1e-3, 1e-1) and res.lam > 0 and np.isfinite(res.objective)
    assert set(res.densities) == set(res.masks) and "heldout_loss" in res.stages[0]
    rep = res.report()
    assert rep["k"] == res.k and rep["timings"]["total"] >= rep["timings"]["lam_search"] > 0


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
                dtype="bfloat16", max_iter=20, threads=1)
    assert not torch.allclose(bn.running_mean, before)  # recalibrated at the pruned weights
    assert sum(int(m.sum()) for m in res.masks.values()) <= res.k
    assert (model.features[0].weight[~res.masks["features.0.weight"]] == 0).all()


@pytest.mark.parametrize("kwargs, match", [
    ({"sparsity": 1.0}, r"\[0, 1\)"),
    ({"sparsity": -0.1}, r"\[0, 1\)"),
    ({"n_samples": 10**6}, "n_samples <="),
    ({"stages": 0}, "stages"),
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
    monkeypatch.setattr(prune_mod, "_solver", no_solver)
    args = {"model": copy.deepcopy(model), "loss_fn": LOSS, "sparsity": 0.5, "n_samples": 64}
    args.update(kwargs)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        prune(args.pop("model"), args.pop("loss_fn"), train, args.pop("sparsity"), **args)
    assert time.perf_counter() - t0 < 5
