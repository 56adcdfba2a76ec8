"""Named architectures as a table: name -> builder, its knobs, and what it is for."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from fmnist.errors import ConfigError
from fmnist.models.nets import FastCNN, TutorialNet
from fmnist.models.resnet import ResNet


@dataclass(frozen=True)
class ModelInfo:
    build: Callable[..., nn.Module]
    summary: str
    knobs: tuple[str, ...] = ()  # keyword arguments a user may set (e.g. width, depth)
    defaults: dict = field(default_factory=dict)


MODELS: dict[str, ModelInfo] = {
    "tutorial": ModelInfo(TutorialNet, "the README table's '2 Conv+pooling' net (reported 91.6%)", ("dropout",)),
    "fastcnn": ModelInfo(FastCNN, "the CPU default: 4 conv-BN layers, ~120k parameters", ("width",), {"width": 32}),
    "resnet": ModelInfo(
        ResNet, "pre-activation residual net for GPUs, width and depth configurable", ("width", "depth", "dropout"),
        {"width": 64, "depth": 2},
    ),
}


def build_model(name: str, num_classes: int = 10, **kwargs) -> nn.Module:
    """Build model ``name``; ``kwargs`` with value None are dropped (the model's default applies)."""
    info = MODELS.get(name)
    if info is None:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    unknown = set(kwargs) - set(info.knobs)
    if unknown:
        raise ConfigError(f"model {name!r} takes no {', '.join(sorted(unknown))} (it takes: {', '.join(info.knobs) or 'nothing'})")
    for key in ("width", "depth"):
        if key in kwargs and int(kwargs[key]) < 1:
            raise ConfigError(f"--{key} must be positive, got {kwargs[key]}")
    return info.build(num_classes=num_classes, **kwargs)


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
