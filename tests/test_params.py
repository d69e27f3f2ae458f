"""Prunable-parameter selection, flattening, masks and sparsity schedules."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from chita_ext.models import MLPNet, SmallCNN  # noqa: E402
from chita_ext.params import (apply_masks, k_from_sparsity, magnitude_masks,  # noqa: E402
                              resolve_params, select_params)
from chita_ext.schedules import sparsity_schedule  # noqa: E402


def test_default_selection_is_conv_and_linear_weights():
    sel = select_params(SmallCNN(8))
    assert sel.names == ["features.0.weight", "features.4.weight", "head.weight"]
    assert sel.p == 8 * 9 + 16 * 8 * 9 + 10 * 16 * 4
    norm = select_params(SmallCNN(8), include_norm=True)
    assert "features.1.weight" in norm.names and "features.1.bias" not in norm.names
    assert "head.bias" in select_params(SmallCNN(8), include_bias=True).names


def test_patterns_and_types():
    m = SmallCNN(8)
    assert select_params(m, include="features.*").names == ["features.0.weight", "features.4.weight"]
    assert select_params(m, exclude=["head.*"]).names == ["features.0.weight", "features.4.weight"]
    assert select_params(m, module_types=(nn.Linear,)).names == ["head.weight"]
    assert resolve_params(m, ["head.weight"]).p == 640
    with pytest.raises(ValueError, match="not parameters"):
        resolve_params(m, ["nope"])


def test_no_prunable_parameters_names_the_fix():
    with pytest.raises(ValueError, match="module_types"):
        select_params(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)))


def test_flatten_assign_split_roundtrip():
    torch.manual_seed(0)
    m = MLPNet(12, (5, 4), 3)
    sel = select_params(m)
    w = sel.flatten()
    assert w.shape == (12 * 5 + 5 * 4 + 4 * 3,) and w.dtype == np.float32
    new = np.arange(sel.p, dtype=np.float32)
    sel.assign(new)
    np.testing.assert_array_equal(sel.flatten(), new)
    parts = sel.split(new)
    assert torch.equal(parts["net.2.weight"], m.net[2].weight.detach())
    with pytest.raises(ValueError, match="expected"):
        sel.assign(new[:-1])


def test_magnitude_keeps_exactly_k_largest():
    torch.manual_seed(0)
    sel = select_params(MLPNet(30, (20, 10), 5))
    w = sel.flatten()
    k = k_from_sparsity(0.9, sel.p)
    kept = magnitude_masks(sel, k)
    assert np.count_nonzero(kept) == k
    assert np.abs(w[kept == 0]).max() <= np.abs(w[kept != 0]).min()
    np.testing.assert_array_equal(kept[kept != 0], w[kept != 0])


def test_apply_masks_zeroes_and_checks_shapes():
    m = MLPNet(6, (4,), 2)
    masks = {"net.0.weight": torch.rand(4, 6) > 0.5}
    apply_masks(m, masks)
    assert (m.net[0].weight[~masks["net.0.weight"]] == 0).all()
    with pytest.raises(ValueError, match="shape"):
        apply_masks(m, {"net.0.weight": torch.ones(2, 2, dtype=torch.bool)})


@pytest.mark.parametrize("kind", ["poly", "linear", "exp", "const"])
def test_schedules_end_at_target_and_never_decrease(kind):
    s = sparsity_schedule(0.95, 5, kind)
    assert len(s) == 5 and s[-1] == 0.95
    assert all(b >= a - 1e-12 for a, b in zip(s, s[1:]))
    assert all(0 <= v <= 0.95 for v in s)


def test_poly_schedule_formula_and_errors():
    s = sparsity_schedule(0.9, 3, "poly")
    np.testing.assert_allclose(s, [0.9 - 0.9 * (2 / 3) ** 3, 0.9 - 0.9 * (1 / 3) ** 3, 0.9])
    assert sparsity_schedule(0.9, 1) == [0.9]
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        sparsity_schedule(1.0, 3)
    with pytest.raises(ValueError, match="choose one of"):
        sparsity_schedule(0.5, 3, "cosine")
