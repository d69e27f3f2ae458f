"""Fail-fast checks on a model and its data, run before any gradient work.

:func:`check_data` says when the data is empty, too small or not made of
``(inputs, targets)`` batches; :func:`check_model_fits` runs ONE forward pass and the loss
on a few samples of one batch and turns a shape or dtype mismatch into a ValueError that
names the model's expected input, the batch's shape and the fix. Neither draws from a
DataLoader's iterator when it can index the dataset, so the shuffling order (and thus
every result) is the same with and without the checks.
"""
from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from .gradients import data_size

FIT_ROWS = 8  # samples in the forward pass of check_model_fits
_DATA_HINT = "pass an iterable of (inputs, targets) batches, e.g. a torch DataLoader or [(x, y)]"


def check_data(data, n_samples: int | None = None):
    """Check that ``data`` is a non-empty iterable of batches holding ``n_samples`` samples.

    Parameters
    ----------
    data : iterable of (inputs, targets)
        Training batches (a DataLoader, a list of pairs, ...).
    n_samples : int, optional
        Samples the caller will draw; checked against the size when it is known.

    Returns
    -------
    int or None
        The number of samples, or None when it cannot be known cheaply (a generator).

    Raises
    ------
    TypeError
        When ``data`` is not iterable or a list holds something other than pairs.
    ValueError
        When ``data`` is empty or smaller than ``n_samples``.
    """
    if data is None or isinstance(data, (torch.Tensor, str, bytes, dict)) \
            or not hasattr(data, "__iter__"):
        raise TypeError(f"data is a {type(data).__name__}; {_DATA_HINT}")
    if isinstance(data, (list, tuple)):
        for i, batch in enumerate(data):
            if not (isinstance(batch, (list, tuple)) and len(batch) == 2):
                raise TypeError(f"data[{i}] is a {type(batch).__name__}, not an "
                                f"(inputs, targets) pair; {_DATA_HINT}")
    size = data_size(data)
    if size == 0:
        want = f" holding at least n_samples={n_samples} samples" if n_samples else ""
        raise ValueError(f"data is empty (0 samples); pass (inputs, targets) batches{want}")
    if n_samples is not None and size is not None and n_samples > size:
        raise ValueError(f"n_samples={n_samples} is larger than the data ({size} samples); "
                         f"pass n_samples <= {size}")
    return size


def first_batch(data, rows: int = FIT_ROWS):
    """Up to ``rows`` samples of the data's first batch as ``(inputs, targets)`` tensors.

    A DataLoader over an indexable dataset is read through ``dataset[i]`` and its
    ``collate_fn`` (its shuffling generator is not advanced); a list through ``data[0]``;
    any other re-iterable through ``next(iter(data))``. Returns None for a one-shot
    iterator (drawing from it would lose the batch).
    """
    ds = getattr(data, "dataset", None)
    collate = getattr(data, "collate_fn", None)
    if ds is not None and collate is not None and hasattr(ds, "__getitem__") \
            and hasattr(ds, "__len__") and not isinstance(ds, torch.utils.data.IterableDataset):
        if len(ds) == 0:
            raise ValueError("data is empty (its dataset has 0 samples); " + _DATA_HINT)
        batch = collate([ds[i] for i in range(min(rows, len(ds)))])
    elif isinstance(data, (list, tuple)):
        if not data:
            raise ValueError("data is empty (an empty list of batches); " + _DATA_HINT)
        batch = data[0]
    elif iter(data) is data:
        return None
    else:
        batch = next(iter(data), None)
        if batch is None:
            raise ValueError("data is empty (it yields no batches); " + _DATA_HINT)
    if not (isinstance(batch, (list, tuple)) and len(batch) == 2):
        raise TypeError(f"data yields {type(batch).__name__} batches, not (inputs, targets) "
                        f"pairs; {_DATA_HINT}")
    try:
        x, y = torch.as_tensor(batch[0]), torch.as_tensor(batch[1])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"data batches must hold tensors or arrays (inputs, targets): {exc}") \
            from None
    return x[:rows], y[:rows]


def _expects(module: nn.Module) -> str | None:
    """What input a layer accepts, in words (None for layers without a fixed input size)."""
    if isinstance(module, nn.Linear):
        return f"{module.in_features} features in the last dimension"
    if isinstance(module, nn.modules.conv._ConvNd):
        d = len(module.kernel_size)
        return (f"{module.in_channels} input channel{'s' if module.in_channels != 1 else ''} "
                f"({d + 2}-D input: batch, {module.in_channels}, ...)")
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return f"{module.num_features} features/channels"
    if isinstance(module, nn.Embedding):
        return f"integer indices below {module.num_embeddings}"
    return None


def _model_expects(model: nn.Module) -> str:
    for name, mod in model.named_modules():
        what = _expects(mod)
        if what is not None:
            return f"the first layer {name} ({type(mod).__name__}) takes {what}"
    return "no layer with a fixed input size was found"


def _shape(t) -> str:
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class _LayerTracker:
    """Forward hooks recording the last leaf layer entered and whether it finished."""

    def __init__(self, model: nn.Module):
        self.name = self.module = self.in_shape = None
        self.done = False
        self.handles = []
        for name, mod in model.named_modules():
            if next(mod.children(), None) is None:
                self.handles.append(mod.register_forward_pre_hook(self._pre(name)))
                self.handles.append(mod.register_forward_hook(self._post))

    def _pre(self, name):
        def hook(mod, inputs):
            self.name, self.module, self.done = name, mod, False
            self.in_shape = _shape(inputs[0]) if inputs else "()"
        return hook

    def _post(self, mod, inputs, output):
        self.done = True

    def where(self, model: nn.Module) -> str:
        """Where the forward pass failed, and what the model expects there."""
        if self.module is None:
            return f"before any layer ran ({_model_expects(model)})"
        what = _expects(self.module)
        layer = f"layer {self.name} ({type(self.module).__name__}"
        if not self.done and what:
            return f"in {layer}, which takes {what} but got shape {self.in_shape})"
        if not self.done:
            return f"in {layer}, which got shape {self.in_shape}; {_model_expects(model)})"
        return f"after {layer}; {_model_expects(model)})"

    def remove(self):
        for h in self.handles:
            h.remove()


def check_model_fits(model, loss_fn, data=None, *, batch=None, rows: int = FIT_ROWS):
    """One forward pass and the loss on ``rows`` samples: does the model fit the data?

    Parameters
    ----------
    model : torch.nn.Module
        Run in eval mode under ``torch.no_grad()`` (its mode is restored).
    loss_fn : callable
        ``loss_fn(outputs, targets)`` returning a batch-mean scalar.
    data : iterable of (inputs, targets), optional
        The first batch is used (see :func:`first_batch`); ignored when ``batch`` is given.
    batch : (inputs, targets), optional
        Use this batch instead of drawing one from ``data``.
    rows : int
        Samples of the batch to run.

    Returns
    -------
    float or None
        The loss on those samples; None when ``data`` is a one-shot iterator (unchecked).

    Raises
    ------
    TypeError
        When ``model`` is not a Module or the data does not yield (inputs, targets).
    ValueError
        When the forward pass or the loss fails on the batch (naming the model's expected
        input, the batch's shape and the fix), or the loss is not a finite scalar.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable: loss_fn(outputs, targets) -> scalar")
    if batch is None:
        batch = first_batch(data, rows)
        if batch is None:
            return None
    x, y = (torch.as_tensor(t)[:rows] for t in batch)
    param = next(model.parameters(), None)
    if param is not None:
        x, y = x.to(param.device), y.to(param.device)
    # Warnings (e.g. MSE broadcasting) are shown only if the check passes: a failed check
    # prints its one line, nothing else.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss = _forward_and_loss(model, loss_fn, x, y)
    for w in caught:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise ValueError(f"loss_fn returned {_shape(loss)}, not a scalar; pass a batch-mean "
                         "loss such as torch.nn.CrossEntropyLoss() (reduction='mean')")
    value = float(loss)
    if not math.isfinite(value):
        raise ValueError(f"the loss is {value} on the first batch of the data: check the "
                         "inputs and the checkpoint for NaN/Inf")
    return value


_CAUGHT = (RuntimeError, ValueError, TypeError, IndexError)  # how shape/dtype errors surface


def _forward_and_loss(model, loss_fn, x, y):
    """``loss_fn(model(x), y)`` in eval mode, no grad; failures become ValueErrors."""
    tracker, was_training = _LayerTracker(model), model.training
    model.eval()
    try:
        with torch.no_grad():
            try:
                out = model(x)
            except _CAUGHT as exc:
                got = f"a batch of inputs of shape {_shape(x)} ({_dtype(x)})"
                raise ValueError(
                    f"model {type(model).__name__} does not fit the data: {got} fails "
                    f"{tracker.where(model)}: {_first_line(exc)}; pass data whose inputs match "
                    f"the model, or a model built for inputs of shape {tuple(x.shape[1:])}"
                ) from exc
            try:
                return loss_fn(out, y)
            except _CAUGHT as exc:
                raise ValueError(
                    f"loss_fn fails on the model's outputs of shape {_shape(out)} and targets "
                    f"of shape {_shape(y)} ({_dtype(y)}): {_first_line(exc)}; pass a loss for "
                    "these outputs, e.g. torch.nn.CrossEntropyLoss() for class indices or "
                    "torch.nn.MSELoss() for targets shaped like the outputs") from exc
    finally:
        tracker.remove()
        model.train(was_training)
