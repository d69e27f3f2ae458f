"""Hooked per-sample gradients (one batched forward + backward) against vmap and a loop."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from chita_ext.gradients import collect_gradients, per_sample_gradients  # noqa: E402
from chita_ext.models import BasicBlock  # noqa: E402
from chita_ext.params import select_params  # noqa: E402


def _rows(model, loss_fn, data, n, method, m=1, chunk=4, params=None):
    sel = select_params(model, include_bias=True) if params is None else params
    out = []
    for _, g in per_sample_gradients(model, loss_fn, data, n, batch_rows=m, chunk=chunk,
                                     method=method, params=sel):
        out.append(torch.cat([g[k].reshape(g[k].shape[0], -1) for k in sel.names], 1))
    return torch.cat(out), sel


def _loop(model, loss_fn, x, y, sel, m=1):
    """One float64 backward per row: the ground truth."""
    rows = []
    for i in range(0, len(x), m):
        grads = torch.autograd.grad(loss_fn(model(x[i:i + m]), y[i:i + m]), sel.params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


def _check(model, x, y, loss_fn=None, m=1, chunk=4, params=None):
    model = model.double().eval()
    x = x.double()
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    data = [(x[:5], y[:5]), (x[5:], y[5:])]
    hooks, sel = _rows(model, loss_fn, data, len(x), "hooks", m, chunk, params)
    ref = _loop(model, loss_fn, x, y, sel, m)
    vm, _ = _rows(model, loss_fn, data, len(x), "vmap", m, chunk, params)
    assert hooks.abs().max() > 1e-3  # not all zero
    torch.testing.assert_close(hooks, ref, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(vm, ref, rtol=1e-9, atol=1e-11)


class Seq(nn.Module):
    """Linear over a (batch, positions, features) input: gradients sum over positions."""

    def __init__(self, bias):
        super().__init__()
        self.a = nn.Linear(6, 5, bias=bias)
        self.b = nn.Linear(5, 3, bias=bias)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x))).mean(1)


@pytest.mark.parametrize("bias", [False, True])
def test_linear_2d_and_3d_inputs(bias):
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(7, 6, bias=bias), nn.ReLU(), nn.Linear(6, 3, bias=bias))
    _check(mlp, torch.randn(12, 7), torch.randint(0, 3, (12,)))
    _check(Seq(bias), torch.randn(12, 4, 6), torch.randint(0, 3, (12,)))


def test_conv1d():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv1d(3, 4, 3, stride=2, padding=1), nn.ReLU(),
                        nn.Conv1d(4, 4, 3, groups=2, dilation=2, padding_mode="reflect",
                              padding=2),
                        nn.Flatten(), nn.LazyLinear(3))
    net(torch.randn(1, 3, 11))
    _check(net, torch.randn(10, 3, 11), torch.randint(0, 3, (10,)))


@pytest.mark.parametrize("cfg", [
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(3, 2), stride=(1, 2), padding=(2, 0), dilation=(2, 1)),
    dict(kernel_size=3, groups=2, padding="same", bias=False),
    dict(kernel_size=4, padding="same", dilation=1),  # asymmetric 'same'
    dict(kernel_size=3, groups=4, padding=1, padding_mode="circular"),  # depthwise
    dict(kernel_size=1, stride=2),
    dict(kernel_size=1, padding=1, bias=False),
])
def test_conv2d_options(cfg):
    torch.manual_seed(2)
    conv = nn.Conv2d(4, 8 if cfg.get("groups", 1) != 4 else 4, **cfg)
    net = nn.Sequential(conv, nn.ReLU(), nn.Conv2d(conv.out_channels, 3, 1),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten())
    _check(net, torch.randn(9, 4, 7, 6), torch.randint(0, 3, (9,)))


def test_bmm_and_grouped_conv_paths_agree(monkeypatch):
    from chita_ext import _layer_grads
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1, stride=2), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten())
    for positions in (0, 10**6):  # force the grouped path, then the bmm path
        monkeypatch.setattr(_layer_grads, "BMM_MAX_POSITIONS", positions)
        _check(net, torch.randn(8, 3, 9, 9), torch.randint(0, 5, (8,)), m=2, chunk=3)


def test_batchnorm_resnet_block_with_minibatch_rows():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4),
                        nn.ReLU(inplace=True), BasicBlock(4, 8, stride=2),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    net.train()
    net(torch.randn(16, 3, 8, 8) * 2 + 1)  # non-trivial running statistics
    _check(net, torch.randn(12, 3, 8, 8), torch.randint(0, 5, (12,)), m=3, chunk=2)


def test_custom_loss_not_a_mean():
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.LazyLinear(4))
    net(torch.randn(1, 2, 5, 5))

    def loss(out, t):  # sum-reduced, weighted, non-linear in the outputs
        return (out.log_softmax(-1).gather(1, t[:, None]) ** 2).sum() * 3.0 + out.pow(4).sum()

    _check(net, torch.randn(8, 2, 5, 5), torch.randint(0, 4, (8,)), loss_fn=loss, m=2)


class Mixed(nn.Module):
    """A selected parameter with no hook (own Parameter) and a tied linear layer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.scale = nn.Parameter(torch.randn(3, 1, 1))
        self.shared = nn.Linear(27, 27)
        self.head = nn.Linear(27, 4)
        self.tied = nn.Linear(4, 4, bias=False)
        self.tied2 = nn.Linear(4, 4, bias=False)
        self.tied2.weight = self.tied.weight

    def forward(self, x):
        h = (self.conv(x) * self.scale).flatten(1)
        h = self.shared(torch.tanh(self.shared(h)))  # the same module twice
        return self.tied2(torch.tanh(self.tied(self.head(h))))


def test_fallback_for_unsupported_and_shared_parameters():
    torch.manual_seed(6)
    model = Mixed().double().eval()
    names = ["conv.weight", "scale", "shared.weight", "head.weight", "head.bias", "tied.weight"]
    sel = select_params(model, include_bias=True)
    from chita_ext.params import resolve_params
    sel = resolve_params(model, names)
    x, y = torch.randn(8, 2, 5, 5, dtype=torch.float64), torch.randint(0, 4, (8,))
    data = [(x, y)]
    auto, _ = _rows(model, nn.CrossEntropyLoss(), data, 8, "auto", params=sel)
    ref = _loop(model, nn.CrossEntropyLoss(), x, y, sel)
    torch.testing.assert_close(auto, ref, rtol=1e-9, atol=1e-11)
    store = collect_gradients(model, nn.CrossEntropyLoss(), data, 8, params=sel)
    assert store.methods == {"conv.weight": "hooks", "scale": "vmap", "shared.weight": "vmap",
                             "head.weight": "hooks", "head.bias": "hooks", "tied.weight": "vmap"}
    np.testing.assert_allclose(store.A, ref.numpy() / np.sqrt(8), rtol=1e-5, atol=1e-8)
    with pytest.raises(ValueError, match="method='hooks' cannot serve"):
        collect_gradients(model, nn.CrossEntropyLoss(), data, 8, params=sel, method="hooks")
    with pytest.raises(ValueError, match="method='fast'"):
        collect_gradients(model, nn.CrossEntropyLoss(), data, 8, params=sel, method="fast")


class UsedOutside(nn.Module):
    """A weight read by its module and again directly in forward: only autograd sees it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 5, bias=False)
        self.out = nn.Linear(5, 3)

    def forward(self, x):
        h = self.fc(x)
        return self.out(torch.tanh(h @ self.fc.weight))


def test_probe_sends_parameters_used_outside_their_module_to_vmap():
    torch.manual_seed(7)
    model = UsedOutside().double().eval()
    x, y = torch.randn(6, 5, dtype=torch.float64), torch.randint(0, 3, (6,))
    store = collect_gradients(model, nn.CrossEntropyLoss(), [(x, y)], 6)
    assert store.methods == {"fc.weight": "vmap", "out.weight": "hooks"}
    sel = select_params(model)
    np.testing.assert_allclose(store.A, _loop(model, nn.CrossEntropyLoss(), x, y, sel).numpy()
                               / np.sqrt(6), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_store_hooks_equal_vmap_float32_model(tmp_path, dtype):
    torch.manual_seed(8)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, groups=3), nn.BatchNorm2d(6), nn.ReLU(),
                        nn.Conv2d(6, 8, 1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 5)).eval()
    x, y = torch.randn(24, 3, 6, 6), torch.randint(0, 5, (24,))
    data = [(x[:10], y[:10]), (x[10:], y[10:])]
    kw = dict(batch_rows=2, dtype=dtype, chunk=5)
    h = collect_gradients(net, nn.CrossEntropyLoss(), data, 24, method="hooks",
                          out=tmp_path / "A.npy", **kw)
    v = collect_gradients(net, nn.CrossEntropyLoss(), data, 24, method="vmap", **kw)
    assert set(h.methods.values()) == {"hooks"} and h.path is not None
    A, B = (torch.as_tensor(s.A).float() for s in (h, v))
    tol = 1e-5 if dtype == "float32" else 1e-2
    torch.testing.assert_close(A, B, rtol=tol, atol=tol * float(B.abs().max()))
    np.testing.assert_allclose(h.mean_grad, v.mean_grad, rtol=1e-4, atol=1e-7)
    on_disk = np.load(tmp_path / "A.npy", mmap_mode="r")
    assert on_disk.shape == (h.p, 12)


def test_unused_layer_gets_zero_rows():
    torch.manual_seed(9)

    class Dead(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(4, 3), nn.Linear(4, 3)

        def forward(self, x):
            return self.used(x)

    model = Dead().eval()
    store = collect_gradients(model, nn.CrossEntropyLoss(),
                              [(torch.randn(6, 4), torch.randint(0, 3, (6,)))], 6)
    A = store.A
    assert np.all(A[:, 12:] == 0) and np.abs(A[:, :12]).max() > 0
