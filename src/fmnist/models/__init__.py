"""Models: named architectures and self-describing checkpoints.

Names are imported lazily so that ``fmnist --help`` does not pay for importing torch.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "MODELS": "fmnist.models.registry",
    "build_model": "fmnist.models.registry",
    "param_count": "fmnist.models.registry",
    "LoadedModel": "fmnist.models.checkpoint",
    "load_model": "fmnist.models.checkpoint",
    "preprocess": "fmnist.models.checkpoint",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'fmnist.models' has no attribute {name!r}")
