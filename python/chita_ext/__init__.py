"""chita_ext: fast CHITA network pruning (Benbaki et al., ICML 2023).

The compiled core solves ``min 1/2||b - A w||^2 + lam/2||w - w_bar||^2 + alpha^T w`` subject
to ``||w||_0 <= k`` with A an n x p matrix of per-sample gradients (n << p).
"""
from __future__ import annotations

from . import kernels
from ._core import build_info as _build_info
from ._core import cuda_device_count
from .result import SolveResult
from .ridge_path import RidgePath
from .solve import METHODS, solve

__version__ = "0.1.0"

# How to get the optional PyTorch side (the CPU build of torch first, as in the README, so
# that the extra does not pull a multi-GB CUDA build).
TORCH_INSTALL = ("pip install torch==2.13.0, then pip install 'chita-ext[torch]' "
                 "(\".[torch]\" in a source checkout)")

# The PyTorch side (gradients, pruning, CLI helpers) needs torch, an optional dependency:
# it is imported on first use, so `import chita_ext` works without torch.
_TORCH_NAMES = frozenset({
    "GradientStore", "MLPNet", "PrunableParams", "PruneResult", "SampleStream", "SmallCNN",
    "apply_masks", "collect_gradients", "digits_loaders", "evaluate", "finetune",
    "format_table", "load_pruned", "mnist_loaders", "per_sample_gradients", "plot_sweep",
    "prune", "recalibrate_bn", "save_pruned", "select_params", "sparsity_schedule", "sweep"})

__all__ = ["solve", "RidgePath", "SolveResult", "METHODS", "build_info", "cuda_device_count",
           "kernels", "__version__", *sorted(_TORCH_NAMES)]


def __getattr__(name):
    if name in _TORCH_NAMES:
        try:
            from . import _torch_api
        except ImportError as exc:  # torch missing
            raise ImportError(f"chita_ext.{name} needs the [torch] extra ({exc}): "
                              f"{TORCH_INSTALL}") from exc
        return getattr(_torch_api, name)
    raise AttributeError(f"module 'chita_ext' has no attribute {name!r}")


def build_info() -> dict:
    """What this build compiled in and what it uses now: version, the default CPU thread
    count (``threads``) and where it came from (``threads_source``), the CPUs available
    (``available_cpus``), SIMD level, CUDA and its architectures, and the CUDA devices
    visible now."""
    return dict(_build_info())
