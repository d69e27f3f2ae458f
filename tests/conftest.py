"""Shared fixtures: devices, problem instances and a real gradient matrix."""
from __future__ import annotations

import numpy as np
import pytest

import chita_ext


def _devices():
    devices = ["cpu"]
    if chita_ext.cuda_device_count() > 0:
        devices.append("cuda")
    return devices


@pytest.fixture(params=_devices())
def device(request):
    """'cpu', plus 'cuda' when this build sees a GPU."""
    return request.param


def on_device(A, device):
    """A numpy matrix (float32 or ml_dtypes.bfloat16) as the solver input for `device`,
    keeping its layout: numpy on the CPU, a torch CUDA tensor on cuda."""
    if device == "cpu":
        return A
    import ml_dtypes
    import torch

    col = A.flags.f_contiguous and not A.flags.c_contiguous
    base = np.ascontiguousarray(A.T if col else A)
    if base.dtype == ml_dtypes.bfloat16:  # torch.from_numpy does not know ml_dtypes
        t = torch.from_numpy(base.view(np.int16)).view(torch.bfloat16)
    else:
        t = torch.from_numpy(base)
    t = t.to("cuda")
    return t.T if col else t


def make_instance(kind: str, n: int, p: int, seed: int):
    """(A column-major float32, w_bar) for a structured random instance."""
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        A = rng.standard_normal((n, p))
    elif kind == "correlated":  # columns share a few latent factors
        Z = rng.standard_normal((n, 3))
        A = Z @ rng.standard_normal((3, p)) + 0.3 * rng.standard_normal((n, p))
    elif kind == "heavy":  # log-normal column scales over several decades
        A = rng.standard_normal((n, p)) * np.exp(1.5 * rng.standard_normal(p))
    else:
        raise ValueError(kind)
    w_bar = rng.standard_normal(p) * np.exp(0.5 * rng.standard_normal(p))
    return np.asfortranarray(A.astype(np.float32)), w_bar.astype(np.float32)


@pytest.fixture(scope="session")
def digits_gradients():
    """Per-sample gradients (n=96, p=1280 weights) of a small MLP trained on sklearn digits."""
    torch = pytest.importorskip("torch", reason="the real-gradient fixture needs torch")
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 20, bias=False), torch.nn.ReLU(),
                                torch.nn.Linear(20, 10, bias=False))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_one(p, x, t):
        out = torch.func.functional_call(model, p, (x[None],))
        return torch.nn.functional.cross_entropy(out, t[None])

    n = 96
    grads = torch.func.vmap(torch.func.grad(loss_one), in_dims=(None, 0, 0))(
        params, X[:n], y[:n])
    G = torch.cat([g.reshape(n, -1) for g in grads.values()], dim=1).numpy()
    w_bar = torch.cat([v.reshape(-1) for v in params.values()]).numpy()
    A = np.asfortranarray((G / np.sqrt(n)).astype(np.float32))
    return A, w_bar.astype(np.float32)
