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
# lam="auto" over a 3-value relative grid, searched at every stage (the best value grows
# with sparsity: ~1e-4 at 90%, ~1e-2 at 98% on this network).
FULL = {"sparsities": (0.5, 0.7, 0.8, 0.9, 0.95, 0.98), "n_samples": 500,
        "stages": 4, "max_test": None, "max_iter": 50, "lam_grid": (1e-4, 1e-3, 1e-2)}
QUICK = {"sparsities": (0.9, 0.95), "n_samples": 200, "stages": 2, "max_test": 2000,
         "max_iter": 20, "lam_grid": (1e-4,)}


def describe(cfg: dict) -> str:
    """One line for --help: what a demo configuration runs (derived, never repeated)."""
    sp = ", ".join(f"{s:g}" for s in cfg["sparsities"])
    return (f"sparsities {sp}; MP, CHITA and CHITA++ ({cfg['stages']} stages); "
            f"{cfg['n_samples']} gradient samples per stage")


def train_mlpnet(epochs: int = 8, seed: int = 0, progress: bool = False) -> MLPNet:
    """Train MLPNet on MNIST with Adam (about 97% test accuracy; ~40 s on 2 cores)."""
    import torch

    from .datasets import mnist_loaders
    from .models import MLPNet

    torch.manual_seed(seed)
    train, _ = mnist_loaders(batch_size=128, seed=seed)
    model = MLPNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    epochs_it = range(epochs)
    if progress:
        from tqdm.auto import tqdm
        epochs_it = tqdm(epochs_it, desc="training dense MLPNet", unit="epoch")
    for _ in epochs_it:
        for x, y in train:
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
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
               "CHITA": {"method": "iht", "stages": 1},
               f"CHITA++ ({stages} stages)": {"method": "iht", "stages": stages}}
    common = {"n_samples": n_samples or cfg["n_samples"], "max_iter": cfg["max_iter"],
              "lam": "auto", "lam_grid": cfg["lam_grid"]}
    return {"factory": lambda: copy.deepcopy(dense), "loss_fn": torch.nn.CrossEntropyLoss(),
            "train": train, "test": test, "sparsities": cfg["sparsities"],
            "configs": configs, "common": common}
