"""chita_ext: fast CHITA network pruning (Benbaki et al., ICML 2023).

The compiled core solves ``min 1/2||b - A w||^2 + lam/2||w - w_bar||^2 + alpha^T w`` subject
to ``||w||_0 <= k`` with A an n x p matrix of per-sample gradients (n << p).
"""
from __future__ import annotations

from . import kernels
from ._core import build_info as _build_info
from ._core import cuda_device_count
from .result import SolveResult
from .solve import METHODS, solve

__version__ = "0.1.0"

__all__ = ["solve", "SolveResult", "METHODS", "build_info", "cuda_device_count", "kernels",
           "__version__"]


def build_info() -> dict:
    """What this build compiled in: version, OpenMP threads, SIMD level, CUDA and its
    architectures, and the CUDA devices visible now."""
    return dict(_build_info())
