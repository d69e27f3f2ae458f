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
import re
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - annotations only
    import torch

# torch is imported where it is used, so that the CLI can check paths (output directory,
# checkpoint) before paying for `import torch`, and say how to install it when it is missing.

FORMAT_VERSION = 1


# A directory holding one of these was written by save_pruned / the CLI and may be replaced.
OUTPUT_MARKERS = ("report.json", "sweep.json")


def check_output_dir(path) -> Path:
    """Raise ValueError unless ``path`` can become an output directory.

    ``path`` may be new (its parents are created), an empty directory, or an earlier
    output (holding ``report.json`` or ``sweep.json``), which is replaced as a whole. A
    file, or a directory of other things, is refused: replacing it would destroy it.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise ValueError(f"output {path} is an existing file, not a directory; pass a new "
                             "directory (or an earlier output directory, which is replaced)")
        entries = [e.name for e in path.iterdir()]
        if entries and not any(m in entries for m in OUTPUT_MARKERS):
            raise ValueError(f"output {path} is a non-empty directory that holds no earlier "
                             f"output ({' or '.join(OUTPUT_MARKERS)}); it would be replaced "
                             "as a whole: pass a new directory")
        parent = path.resolve().parent
    else:
        parent = path.absolute().parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise ValueError(f"cannot create output {path}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot create output {path}: no write permission in {parent}")
    return path


def _normal_modes(root: Path) -> None:
    """Give ``root``'s tree the modes a plain mkdir/open would (the umask honoured).

    ``root`` itself was made by os.mkdir, so its mode is 0o777 minus the umask; some
    writers (safetensors) create 0o600 files, which are opened up to the same mask.
    """
    dir_mode = root.stat().st_mode & 0o777
    file_mode = dir_mode & 0o666
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), dir_mode)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), file_mode)


def _make_partial_dir(path: Path) -> Path:
    """A new hidden sibling of ``path``, made by os.mkdir so that the umask applies."""
    while True:
        tmp = path.with_name(f".{path.name}.partial-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            os.mkdir(tmp)
            return tmp
        except FileExistsError:  # pragma: no cover - 32 random bits collided
            continue


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary directory that replaces ``path`` only if the block succeeds.

    ``path`` is checked first (:func:`check_output_dir`): a file or a directory of other
    things is never replaced.
    """
    path = Path(check_output_dir(path)).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _make_partial_dir(path)
    try:
        yield tmp
        _normal_modes(tmp)
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
        import torch

        name = path_stem.name + ".pt"
        torch.save(tensors, path_stem.with_name(name))
    return name


def _read(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    import torch

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


_SAVE_HINT = "expected a state_dict: save one with torch.save(model.state_dict(), path)"


def _looks_like_safetensors(path: Path) -> bool:
    """safetensors files start with an 8-byte header length, then a JSON object."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _read_checkpoint(path: Path) -> dict:
    """_read with every unreadable or unsafe file turned into a ValueError naming the fix."""
    as_safetensors = path.suffix == ".safetensors" or _looks_like_safetensors(path)
    if as_safetensors:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except PermissionError:
            raise
        except (SafetensorError, ValueError, OSError) as exc:
            raise ValueError(f"checkpoint {path} is not a valid safetensors file "
                             f"({str(exc).splitlines()[0]}); {_SAVE_HINT} or "
                             "safetensors.torch.save_file(model.state_dict(), path)") from None
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise
    except Exception as exc:  # noqa: BLE001 - garbage bytes fail in many ways inside torch.load
        found = re.search(r"GLOBAL (\S+) was not an allowed global", str(exc))
        if found:
            raise ValueError(f"checkpoint {path} holds a pickled {found.group(1)} object (a "
                             "whole model?), not a state_dict; chita-prune loads weights only "
                             f"and never runs pickled code: {_SAVE_HINT}") from None
        raise ValueError(f"checkpoint {path} is neither a torch.save file nor a safetensors "
                         f"file; {_SAVE_HINT}") from None


def load_checkpoint(path) -> dict:
    """Read a state_dict from a ``.safetensors`` or torch file (weights only).

    A torch file is loaded with ``weights_only=True`` (no pickled code runs); a dict with
    a ``"state_dict"`` entry is unwrapped.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When it is a directory, unreadable, corrupt, a pickled model, or not a dict of
        tensors; the message says how to make a state_dict.
    """
    path = check_checkpoint_path(path)
    try:
        state = _read_checkpoint(path)
    except PermissionError:
        raise ValueError(f"checkpoint {path} cannot be read: permission denied") from None
    import torch

    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, not a state_dict; "
                         "save it with torch.save(model.state_dict(), path)")
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        shown = ", ".join(map(repr, not_tensors[:4])) + (", ..." if len(not_tensors) > 4 else "")
        raise ValueError(f"checkpoint {path} is a dict whose entries {shown} are not tensors, "
                         f"not a state_dict; {_SAVE_HINT}")
    return state


def check_checkpoint_path(path) -> Path:
    """Raise FileNotFoundError / ValueError unless ``path`` is an existing file."""
    path = Path(path)
    if path.is_dir():
        hint = next((f" (did you mean {path / f}?)" for f in ("model.safetensors", "model.pt")
                     if (path / f).is_file()), "")
        raise ValueError(f"checkpoint {path} is a directory, not a state_dict file{hint}; "
                         f"{_SAVE_HINT}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return path
