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


# --- Paper-scale networks (defined here so that no torchvision is needed) -------------------
#
# Parameter names follow the checkpoints people have: ResNet20 and MobileNetV1 those of the
# CHITA reference code (``conv1``/``layer1.0.conv1``/..., ``model.3.0``/...; its DataParallel
# checkpoints carry a ``module.`` prefix: see :func:`strip_prefix`), ResNet50 torchvision's.


def _init_conv_bn(model: nn.Module) -> None:
    """He-normal convs (fan_out, as torchvision and the reference), BN weight 1 and bias 0."""
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(mod, nn.BatchNorm2d):
            nn.init.ones_(mod.weight)
            nn.init.zeros_(mod.bias)


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1):
    return [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout)]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a shortcut (1x1 conv-BN when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, cout, 3, stride)
        self.conv2, self.bn2 = _conv_bn(cout, cout, 3)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                         nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNetCifar(nn.Module):
    """CIFAR ResNet (He et al. 2016, section 4.2) for 32x32 inputs: 16-32-64 channels.

    ``blocks=3`` is ResNet20 (270 896 conv and linear weights). The shortcut that changes
    shape is a 1x1 conv + BN (as in the CHITA reference, whose checkpoint loads into it).
    """

    def __init__(self, blocks: int = 3, n_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(in_channels, 16, 3)
        self.relu = nn.ReLU(inplace=True)
        widths, cin = (16, 32, 64), 16
        for i, w in enumerate(widths):
            layer = [BasicBlock(cin if j == 0 else w, w, 2 if (i and j == 0) else 1)
                     for j in range(blocks)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
            cin = w
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, n_classes)
        _init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))


class MobileNetV1(nn.Module):
    """MobileNetV1 (Howard et al. 2017) for 224x224 ImageNet: 4 209 088 conv and linear weights.

    A 3x3 stride-2 conv, then 13 depthwise-separable blocks (3x3 depthwise conv-BN-ReLU,
    1x1 pointwise conv-BN-ReLU), global average pooling and a 1024-1000 classifier.
    Parameter names are those of the CHITA reference (``model.<i>.<j>``, ``fc``).
    """

    #: (output channels, stride) of the 13 depthwise-separable blocks
    BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
              (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))

    def __init__(self, n_classes: int = 1000, width: float = 1.0):
        super().__init__()
        ch = lambda c: max(int(c * width), 8)  # noqa: E731
        cin = ch(32)
        layers = [nn.Sequential(*_conv_bn(3, cin, 3, 2), nn.ReLU(inplace=True))]
        for cout, stride in self.BLOCKS:
            cout = ch(cout)
            layers.append(nn.Sequential(*_conv_bn(cin, cin, 3, stride, groups=cin),
                                        nn.ReLU(inplace=True),
                                        *_conv_bn(cin, cout, 1), nn.ReLU(inplace=True)))
            cin = cout
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.model = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, n_classes)
        _init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.fc(self.model(x).flatten(1))


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3 conv), torchvision's layout and names."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                         nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet50(nn.Module):
    """ResNet50 for 224x224 ImageNet with torchvision's parameter names and shapes.

    25 502 912 conv and linear weights (25 557 032 parameters in all): a torchvision
    ``resnet50`` state_dict loads with ``load_state_dict`` as it is.
    """

    def __init__(self, n_classes: int = 1000, layers=(3, 4, 6, 3)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        for i, (count, width) in enumerate(zip(layers, (64, 128, 256, 512))):
            blocks = [Bottleneck(cin if j == 0 else width * 4, width,
                                 2 if (i and j == 0) else 1) for j in range(count)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = width * 4
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, n_classes)
        _init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def strip_prefix(state_dict: dict, prefix: str = "module.") -> dict:
    """Drop ``prefix`` from every key (a DataParallel checkpoint's ``module.``)."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def resnet20_cifar() -> ResNetCifar:
    """CIFAR-10 ResNet20, random init (``--model chita_ext.models:resnet20_cifar``)."""
    return ResNetCifar(3)


def mobilenet_v1() -> MobileNetV1:
    """ImageNet MobileNetV1, random init (``--model chita_ext.models:mobilenet_v1``)."""
    return MobileNetV1()


def resnet50() -> ResNet50:
    """ImageNet ResNet50 (torchvision names), random init (``chita_ext.models:resnet50``)."""
    return ResNet50()
