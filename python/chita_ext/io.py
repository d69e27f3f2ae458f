"""save_pruned / load_pruned: pruned state_dict, masks and a JSON report, atomically.

A saved directory holds ``model.safetensors`` (or ``model.pt``), ``masks.safetensors``
(or ``masks.pt``) and ``report.json``. It is built in a temporary sibling directory and
renamed into place only when complete, so an interrupted run never leaves a directory
that looks finished.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch

FORMAT_VERSION = 1


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary directory that replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _jsonable(obj):
    """Turn numpy / torch scalars and non-finite floats into JSON-safe values."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _tensors(sd: dict) -> dict:
    """Contiguous CPU tensors, cloning the ones that share storage (tied weights)."""
    out, seen = {}, set()
    for k, v in sd.items():
        v = v.detach().cpu().contiguous()
        ptr = v.untyped_storage().data_ptr()
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out


def _write(tensors: dict, path_stem: Path, fmt: str) -> str:
    if fmt == "safetensors":
        from safetensors.torch import save_file
        name = path_stem.name + ".safetensors"
        save_file(tensors, str(path_stem.with_name(name)))
    else:
        name = path_stem.name + ".pt"
        torch.save(tensors, path_stem.with_name(name))
    return name


def _read(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def save_pruned(path, model: torch.nn.Module, masks: dict, report: dict | None = None, *,
                format: str = "safetensors", extra_files: dict | None = None) -> Path:
    """Write a pruned model to directory ``path`` (replaced atomically).

    Parameters
    ----------
    path : str or Path
        Output directory.
    model : torch.nn.Module
        The pruned model; its full ``state_dict`` is saved.
    masks : dict
        ``{param name: bool tensor}``.
    report : dict, optional
        JSON-ready report (``PruneResult.report()``); ``format_version`` and file names
        are added.
    format : {"safetensors", "torch"}
    extra_files : dict, optional
        ``{file name: bytes or str}`` also written into the directory (tables, plots).

    Returns
    -------
    Path
    """
    if format not in ("safetensors", "torch"):
        raise ValueError(f"format={format!r}; pass 'safetensors' or 'torch'")
    sd = _tensors(model.state_dict())
    for name, m in masks.items():
        if name not in sd:
            raise ValueError(f"mask {name!r} names no entry of the model's state_dict")
        if bool((sd[name][~m.bool()] != 0).any()):
            raise ValueError(f"{name} has non-zero weights where its mask is False; "
                             "call chita_ext.params.apply_masks(model, masks) first")
    rep = dict(report or {})
    with atomic_dir(path) as tmp:
        model_file = _write(sd, tmp / "model", format)
        mask_file = _write({k: v.bool().contiguous() for k, v in masks.items()}, tmp / "masks", format)
        for fname, content in (extra_files or {}).items():
            mode = "wb" if isinstance(content, bytes) else "w"
            with open(tmp / fname, mode) as fh:
                fh.write(content)
        rep.update(format_version=FORMAT_VERSION, model_file=model_file, masks_file=mask_file)
        with open(tmp / "report.json", "w") as fh:  # written last
            json.dump(_jsonable(rep), fh, indent=2)
    return Path(path)


def load_pruned(path, model: torch.nn.Module):
    """Load a directory written by :func:`save_pruned` into ``model`` (same architecture).

    Returns
    -------
    (model, masks, report)
        The model with the exact pruned weights, ``{name: bool tensor}``, the report dict.

    Raises
    ------
    FileNotFoundError
        When ``path`` is not a complete saved directory.
    ValueError
        When the checkpoint does not match ``model``.
    """
    path = Path(path)
    rep_path = path / "report.json"
    if not rep_path.is_file():
        raise FileNotFoundError(f"{path} has no report.json: not a complete save_pruned "
                                "directory (was the run interrupted?)")
    with open(rep_path) as fh:
        report = json.load(fh)
    load_state(model, _read(path / report["model_file"]), source=str(path))
    masks = {k: v.bool() for k, v in _read(path / report["masks_file"]).items()}
    return model, masks, report


def load_state(model: torch.nn.Module, state: dict, source: str = "checkpoint") -> None:
    """``model.load_state_dict(state)`` with a ValueError that says how to fix a mismatch."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        msg = str(exc).split("\n")
        detail = " ".join(s.strip() for s in msg[1:4])
        raise ValueError(f"{source} does not match model {type(model).__name__}: {detail} "
                         "-- pass the model factory that built this checkpoint") from None


def load_checkpoint(path) -> dict:
    """Read a state_dict from a ``.safetensors`` or torch file (weights only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    state = _read(path)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, not a state_dict; "
                         "save it with torch.save(model.state_dict(), path)")
    return state
