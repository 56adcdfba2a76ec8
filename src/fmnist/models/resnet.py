"""A pre-activation residual network for accuracy on GPUs (Wide-ResNet style, width and depth set).

Three stages at 28x28, 14x14 and 7x7; ``depth`` residual blocks per stage; stage widths
``width, 2*width, 4*width``. The defaults (width 64, depth 2) give about 2.8M parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from fmnist.models.nets import Classifier


class PreActBlock(nn.Module):
    """BN-ReLU-conv twice, plus a shortcut (1x1 conv when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.shortcut = (
            nn.Conv2d(cin, cout, 1, stride=stride, bias=False) if stride != 1 or cin != cout else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(x))
        skip = self.shortcut(h) if self.shortcut is not None else x
        h = self.conv1(h)
        h = self.conv2(self.drop(torch.relu(self.bn2(h))))
        return h + skip


class ResNet(Classifier):
    def __init__(self, num_classes: int = 10, width: int = 64, depth: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        widths = (width, 2 * width, 4 * width)
        self.stem = nn.Conv2d(1, width, 3, padding=1, bias=False)
        blocks: list[nn.Module] = []
        cin = width
        for stage, cout in enumerate(widths):
            for i in range(depth):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(PreActBlock(cin, cout, stride, dropout))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(x))
        return self.pool(torch.relu(self.bn(h))).flatten(1)
