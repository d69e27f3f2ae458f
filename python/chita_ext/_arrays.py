"""Checking user arrays once, at the Python edge, and describing them to the C++ core.

numpy arrays (including ``numpy.memmap`` and ``ml_dtypes.bfloat16`` arrays) and torch
tensors (CPU or CUDA) cross as pointers: A is never copied. Vectors of length n or p are
converted to contiguous float32 on A's device (a copy of at most p floats, never of A).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core

_A_DTYPES = "float32 or bfloat16"


def is_torch(x: Any) -> bool:
    """True for a torch.Tensor (without importing torch when it is not loaded)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "data_ptr")


@dataclass(frozen=True)
class MatrixInfo:
    """A checked gradient matrix: its descriptor and where it lives."""

    view: Any          # _core.Matrix
    n: int
    p: int
    dtype: str         # "float32" | "bfloat16"
    layout: str        # "col" | "row"
    device: str        # "cpu" | "cuda"
    device_index: int
    stream: int
    array: Any         # the caller's object, kept alive for the call


def _torch_stream(tensor) -> int:
    import torch

    return torch.cuda.current_stream(tensor.device).cuda_stream


def _layout(shape, strides_in_elements, name: str) -> str:
    n, p = shape
    if strides_in_elements[0] == 1 and (strides_in_elements[1] == n or p == 1):
        return "col"
    if strides_in_elements[1] == 1 and (strides_in_elements[0] == p or n == 1):
        return "row"
    raise ValueError(
        f"{name} of shape {tuple(shape)} is not contiguous (strides {tuple(strides_in_elements)} "
        "in elements); pass a column-major copy once, e.g. numpy.asfortranarray(A) or "
        "A.T.contiguous().T for a torch tensor"
    )


def _check_not_empty(shape, name: str) -> None:
    n, p = (int(s) for s in shape)
    if n < 1 or p < 1:
        what = "no rows (samples)" if n < 1 else "no columns (weights)"
        raise ValueError(f"{name} is empty: shape ({n}, {p}) has {what}; pass an (n, p) matrix "
                         "with n >= 1 gradient rows and p >= 1 weights")


def describe_matrix(A: Any, name: str = "A") -> MatrixInfo:
    """Check A (n x p, float32/bfloat16, contiguous) and describe it without copying."""
    if hasattr(A, "__chita_matrix__"):
        A = A.__chita_matrix__()
    if is_torch(A):
        import torch

        dtypes = {torch.float32: "float32", torch.bfloat16: "bfloat16"}
        if A.dtype not in dtypes:
            raise TypeError(f"{name} has dtype {A.dtype}; pass {_A_DTYPES} (A.float())")
        if A.dim() != 2:
            raise ValueError(f"{name} must be 2-D (n, p); got shape {tuple(A.shape)}")
        if A.requires_grad:
            A = A.detach()
        _check_not_empty(tuple(A.shape), name)
        layout = _layout(tuple(A.shape), A.stride(), name)
        device = A.device.type
        if device not in ("cpu", "cuda"):
            raise ValueError(f"{name} is on device {A.device}; pass a CPU or CUDA tensor")
        index = (A.device.index or 0) if device == "cuda" else 0
        stream = _torch_stream(A) if device == "cuda" else 0
        dtype, ptr = dtypes[A.dtype], A.data_ptr()
    elif isinstance(A, np.ndarray):
        if A.dtype == np.float32:
            dtype = "float32"
        elif A.dtype.name == "bfloat16":
            dtype = "bfloat16"
        else:
            raise TypeError(
                f"{name} has dtype {A.dtype}; pass {_A_DTYPES} (e.g. A.astype(numpy.float32))"
            )
        if A.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n, p); got shape {A.shape}")
        _check_not_empty(A.shape, name)
        strides = tuple(s // A.itemsize for s in A.strides)
        if any(s * A.itemsize != t for s, t in zip(strides, A.strides)):
            raise ValueError(f"{name} has strides {A.strides} not a multiple of its itemsize")
        layout = _layout(A.shape, strides, name)
        device, index, stream = "cpu", 0, 0
        ptr = A.__array_interface__["data"][0]
    else:
        raise TypeError(
            f"{name} must be a numpy array or a torch tensor, got {type(A).__name__}"
        )
    n, p = (int(s) for s in A.shape)
    view = _core.Matrix(ptr, n, p, dtype, layout, device, index, stream)
    return MatrixInfo(view, n, p, dtype, layout, device, index, stream, A)


def check_matrix_finite(info: MatrixInfo, threads: int, name: str = "A") -> None:
    """Raise ValueError if A holds NaN or Inf (one streaming pass)."""
    if info.device == "cpu":
        ok = _core.kernels.all_finite_cpu(info.view, threads)
    else:
        import torch

        A = info.array
        step = max(1, (1 << 26) // max(1, info.n))  # bounded temporary
        ok = all(bool(torch.isfinite(A[:, j : j + step]).all()) for j in range(0, info.p, step))
    if not ok:
        raise ValueError(
            f"{name} contains NaN or Inf; fix the gradients (or pass check_finite=False to "
            "skip this check at your own risk)"
        )


def as_vector(x: Any, length: int, name: str, info: MatrixInfo, dtype: str = "float32"):
    """x as a contiguous 1-D float32 (or int64) array of `length` on A's device."""
    if is_torch(x):
        x = x.detach()
        shape = tuple(x.shape)
        ok_kind = x.is_floating_point() if dtype == "float32" else not x.is_floating_point()
    else:
        x = np.asarray(x)
        shape = x.shape
        ok_kind = (
            np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)
            if dtype == "float32"
            else np.issubdtype(x.dtype, np.integer)
        )
    if not ok_kind:
        want = "a real floating" if dtype == "float32" else "an integer"
        raise TypeError(f"{name} has dtype {x.dtype}; pass {want} array")
    if shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {shape}")
    if info.device == "cuda":
        import torch

        tdtype = torch.float32 if dtype == "float32" else torch.int64
        device = torch.device("cuda", info.device_index)
        out = torch.as_tensor(x, dtype=tdtype, device=device).contiguous()
        if dtype == "float32" and not bool(torch.isfinite(out).all()):
            raise ValueError(f"{name} contains NaN or Inf")
        return out
    if is_torch(x):
        if x.device.type != "cpu":
            raise ValueError(
                f"{name} is on {x.device} but A is on the CPU; pass {name} on the CPU "
                "(A is never moved between devices)"
            )
        x = x.float().numpy() if dtype == "float32" else x.numpy()  # O(length) at most
    out = np.ascontiguousarray(x, dtype=np.float32 if dtype == "float32" else np.int64)
    if dtype == "float32" and not np.isfinite(out).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return out


def pointer(x: Any) -> int:
    """Address of the first element of a contiguous numpy array or torch tensor."""
    if is_torch(x):
        return x.data_ptr()
    return x.__array_interface__["data"][0]


def empty_like_device(info: MatrixInfo, shape, dtype: str):
    """A new uninitialised array on A's device (numpy on the CPU, torch on CUDA)."""
    if info.device == "cuda":
        import torch

        tdtype = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64,
                  "uint8": torch.uint8}[dtype]
        return torch.empty(shape, dtype=tdtype, device=torch.device("cuda", info.device_index))
    return np.empty(shape, dtype=dtype)


def make_backend(info: MatrixInfo, threads: int):
    """The C++ backend for A's device."""
    return _core.Backend(info.device, info.device_index, info.stream, threads)


def check_threads(threads) -> int:
    """None -> 0 (the default, chita_ext._threads.default_threads()), or fewer threads
    when other jobs occupy CPUs now (``load_aware_threads``); else a positive int (the
    C++ side caps it at the CPUs available)."""
    if threads is None:  # 0: the C++ default, unless other jobs occupy CPUs right now
        from ._threads import default_threads, load_aware_threads
        t = load_aware_threads()
        return 0 if t >= default_threads() else t
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise TypeError(f"threads must be an int or None, got {type(threads).__name__}")
    if threads < 1:
        raise ValueError(f"threads={threads} must be >= 1 (or None for the default: "
                         "the CPUs available, or CHITA_NUM_THREADS)")
    return int(threads)
