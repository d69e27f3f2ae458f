"""The PyTorch side of chita_ext, gathered for a lazy import (torch stays optional).

``chita_ext/__init__.py`` resolves these names on first use through a module-level
``__getattr__``, so ``import chita_ext`` works without torch. The modules are named
``pruning``/``finetuning``/``sweeps`` (not ``prune``/``finetune``/``sweep``) so that a
submodule import never shadows the function of the same name on the package.
"""
from .datasets import digits_loaders, mnist_loaders
from .finetuning import evaluate, finetune, recalibrate_bn
from .gradients import GradientStore, SampleStream, collect_gradients, per_sample_gradients
from .io import load_pruned, save_pruned
from .models import MLPNet, SmallCNN
from .params import PrunableParams, apply_masks, select_params
from .pruning import PruneResult, prune
from .schedules import sparsity_schedule
from .sweeps import format_table, plot_sweep, sweep

__all__ = [
    "GradientStore", "MLPNet", "PrunableParams", "PruneResult", "SampleStream", "SmallCNN",
    "apply_masks", "collect_gradients", "digits_loaders", "evaluate", "finetune",
    "format_table", "load_pruned", "mnist_loaders", "per_sample_gradients", "plot_sweep",
    "prune", "recalibrate_bn", "save_pruned", "select_params", "sparsity_schedule", "sweep",
]
