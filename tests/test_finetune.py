"""Masked fine-tuning, gradual pruning, BatchNorm recalibration and evaluation."""
import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from chita_ext.datasets import digits_loaders  # noqa: E402
from chita_ext.finetuning import evaluate, finetune, recalibrate_bn  # noqa: E402
from chita_ext.models import MLPNet, SmallCNN  # noqa: E402
from chita_ext.params import select_params  # noqa: E402
from chita_ext.pruning import prune  # noqa: E402

LOSS = torch.nn.CrossEntropyLoss()


@pytest.fixture(scope="module")
def loaders():
    return digits_loaders(batch_size=64, seed=0)


def test_pruned_weights_stay_zero_through_every_step(loaders):
    train, _ = loaders
    torch.manual_seed(0)
    model = MLPNet(64, (32,), 10)
    masks = {n: torch.rand_like(p) > 0.8 for n, p in model.named_parameters()}
    checked = []

    class Spy(torch.optim.SGD):
        def step(self, closure=None):
            super().step(closure)
            checked.append(any((p[~masks[n]] != 0).any() for n, p in model.named_parameters()))

    opt = Spy(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    losses = finetune(model, LOSS, train, masks, 40, optimizer=opt)
    # the raw optimiser step does move pruned weights; finetune puts them back to zero
    assert len(losses) == 40 and any(checked)
    for n, p in model.named_parameters():
        assert (p[~masks[n]] == 0).all()
    assert sum(losses[-10:]) < sum(losses[:10])


def test_gradual_pruning_with_finetuning(loaders):
    train, test = loaders
    torch.manual_seed(0)
    model = MLPNet(64, (32,), 10)
    finetune(model, LOSS, train, {}, 150, lr=0.05)
    res = prune(model, LOSS, train, 0.8, n_samples=256, lam=1e-3, stages=3,
                finetune_steps=30, eval_data=test, max_iter=30, threads=1)
    assert res.timings["finetune"] > 0 and len(res.stages) == 3
    sel = select_params(model)
    assert (sel.flatten() != 0).sum() <= res.k
    for n, p in model.named_parameters():
        assert (p[~res.masks[n]] == 0).all()
    assert res.metrics["after"]["accuracy"] > 0.7


def test_recalibrate_bn_matches_batch_statistics():
    torch.manual_seed(0)
    model = SmallCNN(8, channels=(3, 4))
    x = torch.randn(96, 64) * 3 + 1
    data = [(x[i:i + 32], torch.zeros(32, dtype=torch.long)) for i in range(0, 96, 32)]
    recalibrate_bn(model, data, n_samples=96, batch=32)
    with torch.no_grad():
        feats = model.features[0](x.reshape(96, 1, 8, 8))
    want = feats.mean((0, 2, 3))
    torch.testing.assert_close(model.features[1].running_mean, want, rtol=1e-5, atol=1e-5)
    assert model.features[1].momentum == 0.1 and model.training  # settings restored


def test_evaluate_counts_correctly():
    model = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    y = torch.tensor([0, 1, 1])
    out = evaluate(model, LOSS, [(x, y)])
    assert out["samples"] == 3 and abs(out["accuracy"] - 2 / 3) < 1e-12
    assert abs(evaluate(copy.deepcopy(model), LOSS, [(x, y)], max_samples=2)["accuracy"] - 1) < 1e-12
