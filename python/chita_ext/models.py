"""Small reference networks: the paper's MLPNet and a BatchNorm CNN for tests."""
from __future__ import annotations

import torch
from torch import nn


class MLPNet(nn.Module):
    """MLPNet of the CHITA paper: 784-40-20-10, ReLU, no biases.

    Parameters
    ----------
    in_features, hidden, n_classes : int
        Layer widths; the defaults give p = 784*40 + 40*20 + 20*10 = 32360 weights.
    """

    def __init__(self, in_features: int = 784, hidden=(40, 20), n_classes: int = 10):
        super().__init__()
        widths = [in_features, *hidden, n_classes]
        layers = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b, bias=False))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.in_features = in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.net(x.reshape(x.shape[0], -1))


class SmallCNN(nn.Module):
    """Conv-BN-ReLU x2 + linear head, for square single-channel images (8x8 or 28x28)."""

    def __init__(self, side: int = 8, channels=(8, 16), n_classes: int = 10):
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.side = side
        self.head = nn.Linear(c2 * (side // 4) ** 2, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = x.reshape(x.shape[0], 1, self.side, self.side)
        return self.head(self.features(x).flatten(1))


def mlpnet() -> MLPNet:
    """Factory for ``--model chita_ext.models:mlpnet`` (784-40-20-10, no biases)."""
    return MLPNet()


def small_cnn_mnist() -> SmallCNN:
    """Factory for a 28x28 SmallCNN (``--model chita_ext.models:small_cnn_mnist``)."""
    return SmallCNN(side=28)


def mlp_digits() -> MLPNet:
    """Factory for scikit-learn digits (64-32-10, no biases): ``chita_ext.models:mlp_digits``."""
    return MLPNet(64, (32,), 10)
