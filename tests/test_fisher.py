"""Fisher diagnostics (effective rows) and the tempered Fisher."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from chita_ext import fisher  # noqa: E402
from chita_ext.gradients import GradientStore  # noqa: E402


def test_effective_rows():
    assert fisher.effective_rows(torch.ones(10)) == pytest.approx(10)
    assert fisher.effective_rows(torch.tensor([1.0, 0, 0, 0])) == pytest.approx(1)
    assert fisher.effective_rows(torch.tensor([1.0, 1, 0, 0])) == pytest.approx(2)
    assert fisher.effective_rows(torch.zeros(5)) == 0.0


def test_diagnose_a_store_against_numpy():
    rng = np.random.default_rng(0)
    G = rng.standard_normal((50, 300)) * np.r_[np.ones(2) * 100, np.ones(48) * 1e-3][:, None]
    st = GradientStore(300, 50)
    st.buffer.copy_(torch.from_numpy(G.T.astype(np.float32)))
    e = (G ** 2).sum(1)
    d = fisher.diagnose(st)
    assert d["effective_rows"] == pytest.approx(e.sum() ** 2 / (e ** 2).sum(), rel=1e-5)
    assert d["degenerate"] and d["effective_rows"] < 2.1


def test_tempered_loss_and_temperature_choice():
    ce = torch.nn.CrossEntropyLoss()
    assert fisher.is_cross_entropy(ce) and not fisher.is_cross_entropy(torch.nn.MSELoss())
    assert fisher.tempered(ce, 1.0) is ce
    out, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    assert float(fisher.tempered(ce, 4.0)(out, y)) == pytest.approx(float(ce(out / 4, y)))

    class Confident(torch.nn.Module):  # logits so large that the loss saturates
        def forward(self, x):
            return 60.0 * torch.nn.functional.one_hot(x.long(), 4).float() + \
                0.5 * torch.randn(len(x), 4, generator=torch.Generator().manual_seed(0))
    x = torch.arange(64) % 4
    assert fisher.pick_temperature(Confident(), ce, x, x, 0.2) > 1.0

    class Unsure(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(len(x), 4)
    assert fisher.pick_temperature(Unsure(), ce, x, x, 0.2) == 1.0
