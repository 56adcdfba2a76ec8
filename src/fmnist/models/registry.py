"""Named architectures: the catalog's entries (``catalog.py``) joined to their builders."""

from __future__ import annotations

from torch import nn

from fmnist.errors import ConfigError
from fmnist.models.catalog import CATALOG
from fmnist.models.nets import FastCNN, TutorialNet
from fmnist.models.resnet import ResNet

BUILDERS = {"tutorial": TutorialNet, "fastcnn": FastCNN, "resnet": ResNet}
MODELS = CATALOG  # name -> ModelEntry (summary, knobs, defaults)


def build_model(name: str, num_classes: int = 10, **kwargs) -> nn.Module:
    """Build model ``name``; ``kwargs`` with value None are dropped (the model's default applies)."""
    entry = CATALOG.get(name)
    if entry is None:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(CATALOG)}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    unknown = set(kwargs) - set(entry.knobs)
    if unknown:
        raise ConfigError(
            f"model {name!r} takes no {', '.join(sorted(unknown))} (it takes: {', '.join(entry.knobs) or 'nothing'})"
        )
    for key in ("width", "depth"):
        if key in kwargs and int(kwargs[key]) < 1:
            raise ConfigError(f"--{key} must be positive, got {kwargs[key]}")
    return BUILDERS[name](num_classes=num_classes, **kwargs)


def build_from_config(cfg, num_classes: int) -> nn.Module:
    """The model a training config (``TrainConfig``) describes: its architecture and knobs, on the CPU."""
    return build_model(cfg.model, num_classes=num_classes, **cfg.model_kwargs())


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
