"""Which weights are pruned, how they flatten into one vector w, and their masks."""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

DEFAULT_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


@dataclass
class PrunableParams:
    """An ordered selection of parameters, flattened into one vector of length p.

    Attributes
    ----------
    names : list of str
        Parameter names as in ``model.named_parameters()``, in flattening order.
    params : list of torch.nn.Parameter
        The live parameters (views into the model).
    """

    names: list
    params: list

    @property
    def sizes(self):
        """Number of weights of each selected tensor."""
        return [t.numel() for t in self.params]

    @property
    def offsets(self):
        """Start of each tensor inside the flat vector (length len(names) + 1)."""
        return np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64).tolist()

    @property
    def p(self) -> int:
        """Total number of prunable weights."""
        return int(sum(self.sizes))

    def flatten(self) -> np.ndarray:
        """Current weights as one float32 numpy vector (a copy)."""
        with torch.no_grad():
            return torch.cat([t.detach().reshape(-1).float().cpu() for t in self.params]).numpy()

    def assign(self, w) -> None:
        """Write the flat vector ``w`` (length p) back into the parameters, in place."""
        w = torch.as_tensor(np.asarray(w, dtype=np.float32))
        if w.shape != (self.p,):
            raise ValueError(f"w has shape {tuple(w.shape)}; expected ({self.p},)")
        with torch.no_grad():
            for t, a, b in zip(self.params, self.offsets[:-1], self.offsets[1:]):
                t.copy_(w[a:b].reshape(t.shape).to(t.dtype))

    def split(self, vec) -> dict:
        """Cut a flat vector into ``{name: tensor shaped like the parameter}``."""
        vec = torch.as_tensor(np.asarray(vec))
        return {n: vec[a:b].reshape(t.shape) for n, t, a, b in
                zip(self.names, self.params, self.offsets[:-1], self.offsets[1:])}

    def masks(self) -> dict:
        """Boolean masks of the current non-zeros, ``{name: bool tensor}``."""
        return {n: (t.detach() != 0).cpu() for n, t in zip(self.names, self.params)}

    def densities(self) -> dict:
        """Fraction of non-zero weights per selected tensor."""
        return {n: float((t.detach() != 0).float().mean()) for n, t in zip(self.names, self.params)}


def _module_of(model: nn.Module):
    """Map parameter name -> (owning module, local name)."""
    out = {}
    for mname, mod in model.named_modules():
        for pname, _ in mod.named_parameters(recurse=False):
            out[f"{mname}.{pname}" if mname else pname] = (mod, pname)
    return out


def select_params(model: nn.Module, *, include=None, exclude=None,
                  module_types=DEFAULT_TYPES, include_bias: bool = False,
                  include_norm: bool = False) -> PrunableParams:
    """Pick the prunable parameters of ``model``.

    Parameters
    ----------
    model : torch.nn.Module
    include : str or list of str, optional
        fnmatch patterns on parameter names (``"features.*.weight"``). When given, only
        matching parameters of the allowed module types are kept.
    exclude : str or list of str, optional
        Patterns removed from the selection (e.g. ``"head.*"`` keeps the classifier dense).
    module_types : tuple of type
        Module classes whose ``weight`` is pruned; conv and linear by default.
    include_bias : bool
        Also prune the biases of those modules (kept dense by default).
    include_norm : bool
        Also prune the weights of normalisation layers (kept dense by default).

    Returns
    -------
    PrunableParams

    Raises
    ------
    ValueError
        When nothing is selected, naming the options that widen the selection.
    """
    include = [include] if isinstance(include, str) else include
    exclude = [exclude] if isinstance(exclude, str) else (exclude or [])
    types = tuple(module_types) + (NORM_TYPES if include_norm else ())
    names, params = [], []
    owners = _module_of(model)
    for name, prm in model.named_parameters():
        mod, local = owners[name]
        ok = isinstance(mod, types) and (local == "weight" or (include_bias and local == "bias"))
        if include is not None:
            ok = ok and any(fnmatch.fnmatchcase(name, pat) for pat in include)
        if ok and not any(fnmatch.fnmatchcase(name, pat) for pat in exclude):
            names.append(name)
            params.append(prm)
    if not names:
        kinds = ", ".join(t.__name__ for t in types)
        raise ValueError(
            f"model {type(model).__name__} has no prunable parameters (looked for weights of "
            f"{kinds}, include={include}, exclude={exclude}); pass module_types=(...) with "
            "its layer classes or widen include=")
    return PrunableParams(names, params)


def resolve_params(model: nn.Module, params=None) -> PrunableParams:
    """Normalise ``params=``: None (defaults), a PrunableParams, or a list of names."""
    if params is None:
        return select_params(model)
    if isinstance(params, PrunableParams):
        return params
    if isinstance(params, str):
        params = [params]
    named = dict(model.named_parameters())
    missing = [n for n in params if n not in named]
    if missing:
        raise ValueError(f"params {missing} are not parameters of the model; "
                         f"choose from {list(named)[:8]}...")
    return PrunableParams(list(params), [named[n] for n in params])


def magnitude_masks(sel: PrunableParams, k: int) -> np.ndarray:
    """Flat vector keeping the k largest |w| of the selection (global magnitude pruning)."""
    w = sel.flatten()
    out = np.zeros_like(w)
    if k > 0:
        keep = np.argpartition(-np.abs(w), k - 1)[:k]
        out[keep] = w[keep]
    return out


def apply_masks(model: nn.Module, masks: dict) -> None:
    """Zero, in place, every weight whose mask entry is False."""
    named = dict(model.named_parameters())
    with torch.no_grad():
        for name, m in masks.items():
            if name not in named:
                raise ValueError(f"mask {name!r} names no parameter of the model")
            t = named[name]
            if tuple(m.shape) != tuple(t.shape):
                raise ValueError(f"mask {name!r} has shape {tuple(m.shape)}; parameter has {tuple(t.shape)}")
            t.mul_(m.to(device=t.device, dtype=t.dtype))


def k_from_sparsity(sparsity: float, p: int) -> int:
    """Number of weights kept: ``round((1 - sparsity) * p)``, at least 1."""
    return max(1, int(round((1.0 - sparsity) * p)))
