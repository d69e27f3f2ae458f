"""checks.py: the data and the model's fit are checked before any gradient work."""
import math

import pytest

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from chita_ext.checks import check_data, check_model_fits, first_batch  # noqa: E402
from chita_ext.models import MLPNet, SmallCNN  # noqa: E402

CE = torch.nn.CrossEntropyLoss()


def _loader(n=40, d=64, classes=10, shuffle=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=shuffle,
                      generator=torch.Generator().manual_seed(seed))


def test_check_data_sizes_and_empty_data():
    x, y = torch.randn(10, 4), torch.randint(0, 2, (10,))
    assert check_data([(x, y), (x, y)], 20) == 20
    assert check_data(_loader(40), 40) == 40
    assert check_data((b for b in [(x, y)]), 5) is None  # unknown size: not refused
    with pytest.raises(ValueError, match=r"data is empty \(0 samples\)"):
        check_data([], 10)
    with pytest.raises(ValueError, match="data is empty"):
        check_data(DataLoader(TensorDataset(x[:0], y[:0])), 10)
    with pytest.raises(ValueError, match=r"n_samples=21 is larger than the data \(20 samples\)"):
        check_data([(x, y), (x, y)], 21)
    with pytest.raises(TypeError, match=r"data\[0\] is a Tensor, not an \(inputs, targets\) pair"):
        check_data((x, y), 5)  # one batch passed without its list
    for bad in (None, 3, x):
        with pytest.raises(TypeError, match="iterable of \\(inputs, targets\\) batches"):
            check_data(bad, 5)


def test_a_fitting_model_passes_and_nothing_changes():
    torch.manual_seed(0)
    model = MLPNet(64, (16,), 10).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader = _loader()
    order_before = [y.tolist() for _, y in loader]
    loader = _loader()
    loss = check_model_fits(model, CE, loader)
    assert math.isfinite(loss) and loss > 0
    assert model.training  # mode restored
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [y.tolist() for _, y in loader] == order_before  # shuffling RNG not advanced
    x, y = first_batch(loader, rows=5)
    assert x.shape == (5, 64) and y.shape == (5,)


def test_a_model_that_does_not_fit_names_its_input_and_the_batch():
    with pytest.raises(ValueError) as info:
        check_model_fits(MLPNet(), CE, _loader(d=64))  # a 784-input model on 64 features
    msg = str(info.value)
    assert "model MLPNet does not fit the data" in msg
    assert "inputs of shape (8, 64)" in msg and "takes 784 features" in msg
    assert "layer net.0 (Linear" in msg and "a model built for inputs of shape (64,)" in msg
    assert "\n" not in msg
    with pytest.raises(ValueError, match=r"before any layer ran \(the first layer features\.0 "
                                         r"\(Conv2d\) takes 1 input channel"):
        check_model_fits(SmallCNN(side=28), CE, _loader(d=64))
    with pytest.raises(ValueError, match=r"inputs of shape \(8, 64\) \(float64\)"):
        check_model_fits(MLPNet(64, (8,), 10), CE, [(torch.randn(8, 64).double(),
                                                     torch.zeros(8, dtype=torch.long))])


def test_loss_problems_are_named():
    model = MLPNet(64, (8,), 10)
    data = _loader()
    with pytest.raises(ValueError, match=r"loss_fn fails on the model's outputs of shape "
                                         r"\(8, 10\) and targets of shape \(8,\) \(int64\)"):
        check_model_fits(model, lambda out: out.sum(), data)
    with pytest.raises(ValueError, match="not a scalar"):
        check_model_fits(model, torch.nn.CrossEntropyLoss(reduction="none"), data)
    with pytest.raises(ValueError, match="the loss is nan"):
        check_model_fits(model, lambda o, t: o.sum() * float("nan"), data)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        check_model_fits(lambda x: x, CE, data)


def test_batches_that_are_not_pairs_and_one_shot_iterators():
    x = torch.randn(8, 64)
    with pytest.raises(TypeError, match="not \\(inputs, targets\\) pairs"):
        check_model_fits(MLPNet(64, (8,), 10), CE, [x])
    with pytest.raises(ValueError, match="data is empty"):
        check_model_fits(MLPNet(64, (8,), 10), CE, [])
    gen = iter([(x, torch.zeros(8, dtype=torch.long))])
    assert check_model_fits(MLPNet(), CE, gen) is None  # not consumed, not checked
    assert next(gen)[0] is x
    batch = (x, torch.zeros(8, dtype=torch.long))
    with pytest.raises(ValueError, match="784 features"):
        check_model_fits(MLPNet(), CE, batch=batch)
