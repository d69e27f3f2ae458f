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

    def harmful(model, data, n_samples, batch, stream):  # statistics that ruin the network
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


def test_guard_sample_count_follows_the_budget():
    """GUARD_SAMPLES without a budget; fewer when the forward passes would not fit what is
    left of it, or when the data is smaller; never below GUARD_MIN_SAMPLES (or held-out)."""
    from chita_ext.final_guard import GUARD_MIN_SAMPLES, GUARD_SAMPLES, guard_count
    # 4 stages x 512 held-out samples in 2.048 s: 1 ms per sample forward
    assert guard_count(2.048, 4, 512, None, 100.0) == GUARD_SAMPLES
    assert guard_count(2.048, 4, 512, 1000.0, 10.0) == GUARD_SAMPLES  # plenty left
    # 10 s left of 100: 5000 samples (two passes of 1 ms each)
    assert guard_count(2.048, 4, 512, 100.0, 90.0) == 5000
    # over budget: the 5% reserve (5 s of 100 -> 2500 samples)
    assert guard_count(2.048, 4, 512, 100.0, 150.0) == 2500
    assert guard_count(2.048, 4, 512, 10.0, 150.0) == GUARD_MIN_SAMPLES
    assert guard_count(2.048, 4, 4096, 10.0, 150.0) == 4096
    assert guard_count(2.048, 4, 512, None, 0.0, data_len=3000) == 3000


class _Stream:
    """A SampleStream stand-in: fixed samples, chunk by chunk."""

    def __init__(self, x, y):
        self.x, self.y, self.at = x, y, 0

    def take(self, n):
        x, y = self.x[self.at:self.at + n], self.y[self.at:self.at + n]
        self.at += n
        return x, y


def _guard(ours_wrong, mp_wrong):
    """compare_with_magnitude on lookup 'models': sample i (its input is i, its target 0)
    is misclassified by ours / by MP where the masks say. Returns the winner, the tally
    and which network the model holds at the end."""
    from chita_ext import final_guard
    n = len(ours_wrong)
    x, y = torch.arange(n, dtype=torch.float32)[:, None], torch.zeros(n, dtype=torch.long)
    wrong = {"ours": ours_wrong, "mp": mp_wrong}
    which = {"now": "ours"}

    class Lookup(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, xb):
            logits = torch.zeros(len(xb), 2)
            logits[:, 0] = torch.where(wrong[which["now"]][xb[:, 0].long()], -1.0, 1.0)
            return logits

    winner, tally, _ = final_guard.compare_with_magnitude(
        Lookup(), torch.nn.CrossEntropyLoss(), _Stream(x, y), n,
        lambda: which.__setitem__("now", "ours"), lambda: which.__setitem__("now", "mp"))
    return winner, tally, which["now"]


def test_final_guard_sign_test_and_early_stop():
    """A clear difference stops after GUARD_MIN_SAMPLES; a small one uses every sample and
    is decided by the counts; the model is left holding the winner."""
    from chita_ext.final_guard import GUARD_MIN_SAMPLES
    n = 16384
    ours_wrong, mp_wrong = torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
    ours_wrong[:100] = mp_wrong[:100] = True  # both wrong on these
    mp_wrong[100:400] = True  # 300 only ours gets right, all in the first chunk
    winner, tally, now = _guard(ours_wrong, mp_wrong)
    assert (winner, now) == ("chita", "ours") and tally.samples == GUARD_MIN_SAMPLES
    same = torch.zeros(n, dtype=torch.bool)
    winner, tally, _ = _guard(same, same)
    assert winner == "chita"  # a tie on accuracy and loss keeps ours
    # 40 vs 60 spread over all samples: |a - b| = 20 < 3 sqrt(100): no early stop; MP wins
    picks = torch.from_numpy(np.random.default_rng(0).choice(n, 100, replace=False))
    ours_wrong, mp_wrong = torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
    ours_wrong[picks[:60]] = True  # 60 samples only MP gets right
    mp_wrong[picks[60:]] = True    # 40 only ours gets right
    winner, tally, now = _guard(ours_wrong, mp_wrong)
    assert winner == "mp" and now == "mp"
    assert tally.samples == n and (tally.ours_only, tally.mp_only) == (40, 60)
