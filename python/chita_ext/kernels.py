"""The core's kernels, one call each, on numpy arrays or torch tensors (CPU or CUDA).

These are the building blocks the solvers run; they are exposed for tests, benchmarks and
users composing their own methods. Outputs come back on A's device (numpy on the CPU).
"""
from __future__ import annotations

import numpy as np

from . import _arrays, _core

__all__ = ["atr", "atr_subset", "ax_sparse", "ax_dense", "gram_rows", "gram_cols",
           "topk_abs", "dot", "sq_dist", "max_abs_unmasked", "support_change_step"]


def _setup(A, threads):
    info = _arrays.describe_matrix(A)
    return info, _arrays.make_backend(info, _arrays.check_threads(threads))


def _indices(idx, info):
    idx_v = _arrays.as_vector(idx, len(idx), "idx", info, dtype="int64")
    host = np.asarray(idx_v.cpu() if _arrays.is_torch(idx_v) else idx_v)
    if host.size == 0:
        raise ValueError("idx must not be empty")
    if host.min() < 0 or host.max() >= info.p or np.any(np.diff(host) <= 0):
        raise ValueError(f"idx must be strictly increasing indices in [0, p={info.p})")
    return idx_v


def atr(A, r, *, threads=None):
    """``A.T @ r`` (float32, length p)."""
    info, be = _setup(A, threads)
    r_v = _arrays.as_vector(r, info.n, "r", info)
    out = _arrays.empty_like_device(info, (info.p,), "float32")
    _core.kernels.atr(be, info.view, _arrays.pointer(r_v), _arrays.pointer(out))
    return out


def atr_subset(A, r, idx, *, threads=None):
    """``A[:, idx].T @ r`` (float32, length len(idx))."""
    info, be = _setup(A, threads)
    r_v = _arrays.as_vector(r, info.n, "r", info)
    idx_v = _indices(idx, info)
    out = _arrays.empty_like_device(info, (len(idx_v),), "float32")
    _core.kernels.atr_subset(be, info.view, _arrays.pointer(r_v), _arrays.pointer(idx_v),
                             len(idx_v), _arrays.pointer(out))
    return out


def ax_sparse(A, idx, x, *, threads=None):
    """``A[:, idx] @ x`` (float64, length n)."""
    info, be = _setup(A, threads)
    idx_v = _indices(idx, info)
    x_v = _arrays.as_vector(x, len(idx_v), "x", info)
    out = _arrays.empty_like_device(info, (info.n,), "float64")
    _core.kernels.ax_sparse(be, info.view, _arrays.pointer(idx_v), _arrays.pointer(x_v),
                            len(idx_v), _arrays.pointer(out))
    return out


def ax_dense(A, x, *, threads=None):
    """``A @ x`` (float64, length n)."""
    info, be = _setup(A, threads)
    x_v = _arrays.as_vector(x, info.p, "x", info)
    out = _arrays.empty_like_device(info, (info.n,), "float64")
    _core.kernels.ax_dense(be, info.view, _arrays.pointer(x_v), _arrays.pointer(out))
    return out


def gram_rows(A, idx, *, threads=None):
    """``A_S @ A_S.T`` (n x n float64 numpy array, on the host)."""
    info, be = _setup(A, threads)
    idx_v = _indices(idx, info)
    out = np.empty((info.n, info.n), dtype=np.float64)
    _core.kernels.gram_rows(be, info.view, _arrays.pointer(idx_v), len(idx_v),
                            _arrays.pointer(out))
    return out


def gram_cols(A, idx, *, threads=None):
    """``A_S.T @ A_S`` (k x k float64 numpy array, on the host)."""
    info, be = _setup(A, threads)
    idx_v = _indices(idx, info)
    out = np.empty((len(idx_v), len(idx_v)), dtype=np.float64)
    _core.kernels.gram_cols(be, info.view, _arrays.pointer(idx_v), len(idx_v),
                            _arrays.pointer(out))
    return out


def _vector_backend(x, threads):
    """Backend and a 1 x m matrix descriptor for device placement of a lone vector."""
    if _arrays.is_torch(x):
        x = x.detach().float().contiguous()
        info = _arrays.describe_matrix(x.reshape(1, -1), name="x")
    else:
        x = np.ascontiguousarray(x, dtype=np.float32)
        info = _arrays.describe_matrix(x.reshape(1, -1), name="x")
    return x, info, _arrays.make_backend(info, _arrays.check_threads(threads))


def topk_abs(x, k, *, threads=None):
    """Indices (int64, ascending) of the k largest ``|x|``; ties go to the smaller index."""
    x, info, be = _vector_backend(x, threads)
    if not 1 <= k <= info.p:
        raise ValueError(f"k={k} must be in [1, {info.p}]")
    out = _arrays.empty_like_device(info, (k,), "int64")
    _core.kernels.topk_abs(be, _arrays.pointer(x), info.p, k, _arrays.pointer(out))
    return out


def dot(x, y, *, threads=None):
    """``sum(x * y)`` accumulated in float64."""
    x, info, be = _vector_backend(x, threads)
    y = _arrays.as_vector(y, info.p, "y", info)
    return _core.kernels.dot(be, _arrays.pointer(x), _arrays.pointer(y), info.p)


def sq_dist(x, y, *, threads=None):
    """``sum((x - y)**2)`` accumulated in float64."""
    x, info, be = _vector_backend(x, threads)
    y = _arrays.as_vector(y, info.p, "y", info)
    return _core.kernels.sq_dist(be, _arrays.pointer(x), _arrays.pointer(y), info.p)


def max_abs_unmasked(g, mask, *, threads=None):
    """``max |g[j]|`` over the j with ``mask[j] == 0`` (0 if none)."""
    g, info, be = _vector_backend(g, threads)
    if _arrays.is_torch(g):
        import torch

        m = torch.as_tensor(mask, device=g.device).to(torch.uint8).contiguous()
    else:
        m = np.ascontiguousarray(mask, dtype=np.uint8)
    if m.shape != (info.p,):
        raise ValueError(f"mask must have shape ({info.p},)")
    return _core.kernels.max_abs_unmasked(be, _arrays.pointer(g), _arrays.pointer(m), info.p)


def support_change_step(w_s, g_s, M, *, threads=None):
    """CHITA's tau_chg: min over the support of ``|w| / (M + sign(w) g)`` (positive terms)."""
    w_s, info, be = _vector_backend(w_s, threads)
    g_v = _arrays.as_vector(g_s, info.p, "g_s", info)
    return _core.kernels.support_change_step(be, _arrays.pointer(w_s), _arrays.pointer(g_v),
                                             info.p, float(M))
