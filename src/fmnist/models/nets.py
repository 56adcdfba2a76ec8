"""The plain convolutional networks: the README's tutorial net and the fast CPU default.

Every model here exposes ``features(x) -> (n, d)`` (the penultimate layer, used by the
embedding maps) and ``classifier`` (the last Linear); ``forward`` is their
composition. Inputs are normalised (n, 1, 28, 28) float tensors.
"""

from __future__ import annotations

import abc

import torch
from torch import nn


class Classifier(nn.Module, abc.ABC):
    """Base: ``forward(x) = classifier(features(x))``."""

    classifier: nn.Linear

    @abc.abstractmethod
    def features(self, x: torch.Tensor) -> torch.Tensor:  # (n, 1, 28, 28) -> (n, d)
        """The penultimate layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class TutorialNet(Classifier):
    """The "2 Conv+pooling" network of the Fashion-MNIST benchmark table (reported 0.916).

    5x5 conv 32 + ReLU, 2x2 max-pool, 5x5 conv 64 + ReLU, 2x2 max-pool, dense 1024 + ReLU,
    dropout 0.4, dense 10. 3,274,634 parameters.
    """

    def __init__(self, num_classes: int = 10, dropout: float = 0.4) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 28 -> 14
            nn.Conv2d(32, 64, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 14 -> 7
            nn.Flatten(),
            nn.Linear(7 * 7 * 64, 1024),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.classifier = nn.Linear(1024, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def conv_bn(cin: int, cout: int, pool: bool = False) -> list[nn.Module]:
    """3x3 conv (no bias), optional 2x2 max-pool, BatchNorm, ReLU: the unit of the fast nets.

    Pooling right after the conv (as airbench does) runs BatchNorm and ReLU, forward and backward,
    on a quarter of the pixels: on two AVX2 cores that is 10-25% more training images/s.
    """
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return [*layers, nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class FastCNN(Classifier):
    """The CPU default: four 3x3 conv-BN-ReLU layers, two pools, a global max+avg pool.

    Sized for two CPU cores with channels_last: width 16 (33,978 parameters) trains at about
    3,200 images/s and infers at about 11,500 images/s on two AVX2 cores in fp32; widths 20-32 cost
    far more per image there (benchmarks/NOTES.md). With native bf16 (AMX) width 16 runs at about
    9,500 / 57,000 images/s. ``width`` scales every layer (32: 132,458); ``depth`` is the number of convs
    at 7x7, where an extra layer is cheapest per parameter: the bf16 recipes (``cpu-fast``: width 24,
    depth 2, 158,290 parameters) spend their doubled speed there (5,700 against 6,900 training images/s
    for depth 1 on two Zen 5 cores, and a point more validation accuracy in short runs).
    """

    def __init__(self, num_classes: int = 10, width: int = 16, depth: int = 1) -> None:
        super().__init__()
        w1, w2, w3 = width, 2 * width, 4 * width
        self.body = nn.Sequential(
            *conv_bn(1, w1, pool=True),  # 28 -> 14
            *conv_bn(w1, w2),
            *conv_bn(w2, w2, pool=True),  # 14 -> 7
            *conv_bn(w2, w3),
            *[layer for _ in range(depth - 1) for layer in conv_bn(w3, w3)],
        )
        self.pool_max = nn.AdaptiveMaxPool2d(1)
        self.pool_avg = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(2 * w3, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        return torch.cat([self.pool_max(h).flatten(1), self.pool_avg(h).flatten(1)], dim=1)
