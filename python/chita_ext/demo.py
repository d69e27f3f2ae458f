"""The built-in demo: the paper's MLPNet on real MNIST, CHITA / CHITA++ vs magnitude.

torch is imported inside the functions, so that ``chita-prune --help`` can describe the
demo from FULL / QUICK without torch installed.
"""
from __future__ import annotations

import copy
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - for the annotations only
    from .models import MLPNet

CHECKPOINT = "mlpnet_mnist.safetensors"
# The full demo runs prune()'s defaults (stages="auto": 5 to 16 stages, its time budget);
# the quick one fixes the stage count and has no budget, so that its result does not
# depend on the machine's speed (the same masks single-process and under torchrun).
FULL = {"sparsities": (0.5, 0.7, 0.8, 0.9, 0.95, 0.98), "n_samples": None,
        "stages": "auto", "max_test": None}
QUICK = {"sparsities": (0.9, 0.95), "n_samples": 200, "stages": 4, "max_test": 2000}


def describe(cfg: dict) -> str:
    """One line for --help: what a demo configuration runs (derived, never repeated)."""
    sp = ", ".join(f"{s:g}" for s in cfg["sparsities"])
    stages = ("stages from the sparsity, prune()'s defaults" if cfg["stages"] == "auto"
              else f"{cfg['stages']} stages")
    samples = (f"{cfg['n_samples']} gradient samples per stage" if cfg["n_samples"]
               else "prune()'s default gradient samples per stage")
    return f"sparsities {sp}; MP, CHITA (one stage) and CHITA++ ({stages}); {samples}"


def train_mlpnet(epochs: int = 8, seed: int = 0, progress: bool = False) -> MLPNet:
    """Train MLPNet on MNIST with Adam (about 97% test accuracy; ~40 s on 2 cores)."""
    import torch

    from .datasets import mnist_loaders
    from .models import MLPNet
    from .progress import phase

    torch.manual_seed(seed)
    train, _ = mnist_loaders(batch_size=128, seed=seed)
    model = MLPNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    bar = phase(epochs, "training dense MLPNet", unit="epoch", enabled=progress)
    for _ in range(epochs):
        for x, y in train:
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
        bar.update(1)
    bar.close()
    return model.eval()


def shipped_mlpnet() -> MLPNet | None:
    """The trained MLPNet shipped with the package, or None when unavailable."""
    try:
        from safetensors.torch import load_file
        ref = resources.files("chita_ext") / "checkpoints" / CHECKPOINT
        with resources.as_file(ref) as path:
            if not path.is_file():
                return None
            state = load_file(str(path))
    except (ImportError, FileNotFoundError, ModuleNotFoundError):
        return None
    from .models import MLPNet

    model = MLPNet()
    model.load_state_dict(state)
    return model.eval()


def dense_mlpnet(progress: bool = False) -> MLPNet:
    """Shipped checkpoint if present, else train one now (offline, seconds)."""
    model = shipped_mlpnet()
    return model if model is not None else train_mlpnet(progress=progress)


def demo_setup(quick: bool = False, progress: bool = True, stages=None, n_samples=None):
    """Everything the demo sweep needs: factory, loss, data, sparsities, configs, options."""
    import torch

    from .datasets import mnist_loaders

    cfg = dict(QUICK if quick else FULL)
    stages = stages or cfg["stages"]
    train, test = mnist_loaders(batch_size=128, max_test=cfg["max_test"])
    dense = dense_mlpnet(progress=progress)
    configs = {"MP": {"method": "mp"},
               "CHITA": {"stages": 1},
               "CHITA++": {"stages": stages}}
    common = {}
    if n_samples or cfg["n_samples"]:
        common["n_samples"] = n_samples or cfg["n_samples"]
    return {"factory": lambda: copy.deepcopy(dense), "loss_fn": torch.nn.CrossEntropyLoss(),
            "train": train, "test": test, "sparsities": cfg["sparsities"],
            "configs": configs, "common": common}
