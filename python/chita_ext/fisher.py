"""Is the gradient matrix informative? Diagnostics of the empirical Fisher, and a remedy.

A trained network that fits its training set almost perfectly has almost every
per-sample gradient close to zero (cross-entropy saturates): ``A^T A`` is then carried by
a handful of rows and tells little about which weights matter. The *effective number of
rows* ``(sum_i ||a_i||^2)^2 / sum_i ||a_i||^4`` measures this (n when all rows weigh the
same, 1 when one row carries everything).

The remedy used by default for cross-entropy losses is the *tempered* Fisher: gradients of
the loss on ``outputs / T``, with the temperature T chosen so that the effective number
of rows reaches a target share of n. Softening the outputs keeps the direction of every
sample's gradient (which weights move its logits) while no longer letting confidence
erase it. With T = 1 it is the empirical Fisher.
"""
from __future__ import annotations

import torch

# The effective number of rows is measured over the gradient matrix A = rows / sqrt(n).
DEGENERATE_SHARE = 0.05   # fewer effective rows than this share of n: degenerate
TARGET_SHARE = 0.2        # the tempered Fisher aims at this share
TEMPERATURES = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
FISHERS = ("auto", "empirical", "tempered")


def effective_rows(energies: torch.Tensor) -> float:
    """``(sum e)^2 / sum e^2``: how many rows carry the Fisher estimate (0 if all zero)."""
    e = energies.double()
    den = float(e.square().sum())
    return float(e.sum()) ** 2 / den if den > 0 else 0.0


def diagnose(store, energies=None) -> dict:
    """Effective rows, their share of n, the share of (near-)zero rows, and a verdict.

    ``energies`` (the row energies, e.g. summed over the column shards of a distributed
    store) replaces ``store.row_energies()``.
    """
    e = store.row_energies() if energies is None else energies
    n_eff = effective_rows(e)
    zero = float((e <= 1e-12 * max(float(e.max()), 1e-300)).double().mean())
    share = n_eff / max(1, store.n)
    return {"effective_rows": n_eff, "share": share, "zero_rows": zero,
            "degenerate": share < DEGENERATE_SHARE}


def is_cross_entropy(loss_fn) -> bool:
    """True for losses that tempering applies to (softmax cross-entropy / NLL on logits)."""
    return isinstance(loss_fn, (torch.nn.CrossEntropyLoss,)) or \
        loss_fn is torch.nn.functional.cross_entropy


def tempered(loss_fn, temperature: float):
    """``loss_fn`` applied to ``outputs / temperature`` (the tempered Fisher's loss)."""
    if temperature == 1.0:
        return loss_fn

    def loss(outputs, targets):
        return loss_fn(outputs / temperature, targets)
    loss.temperature = temperature
    return loss


@torch.no_grad()
def logits(model, x, batch: int = 256) -> torch.Tensor:
    """The model's outputs on ``x`` in eval mode, without autograd, ``batch`` at a time
    (one forward over hundreds of large-model samples would hold gigabytes of
    activations)."""
    was = model.training
    model.eval()
    try:
        return torch.cat([model(x[a:a + batch]) for a in range(0, len(x), batch)])
    finally:
        model.train(was)


def temperature_from_logits(out, y, target_share: float = TARGET_SHARE) -> float:
    """Smallest temperature in TEMPERATURES whose per-sample loss-gradient energies on the
    outputs ``out`` reach ``target_share`` effective rows.

    The gradient of softmax cross-entropy with respect to the logits is ``softmax(o/T) -
    onehot`` (scaled by 1/T), so its squared norm per sample is what weighs each sample's
    row of A, up to the back-propagated Jacobian.
    """
    onehot = torch.nn.functional.one_hot(y.long(), out.shape[-1]).to(out.dtype)
    for T in TEMPERATURES:
        g = (torch.softmax(out / T, -1) - onehot) / T
        if effective_rows(g.square().sum(-1)) >= target_share * len(out):
            return float(T)
    return float(TEMPERATURES[-1])


def pick_temperature(model, loss_fn, x, y, target_share: float = TARGET_SHARE,
                     batch: int = 256) -> float:
    """:func:`temperature_from_logits` of the model's outputs on ``x`` (a cheap proxy: one
    forward pass)."""
    return temperature_from_logits(logits(model, x, batch), y, target_share)
