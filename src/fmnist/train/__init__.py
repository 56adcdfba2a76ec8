"""Training: config, tensor-resident data, batch augmentation, the loop, checkpoints and resume.

Names are imported lazily so that ``fmnist --help`` does not pay for importing torch.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "PRESETS": "fmnist.train.config",
    "TrainConfig": "fmnist.train.config",
    "make_config": "fmnist.train.config",
    "TrainingData": "fmnist.train.data",
    "load_training_data": "fmnist.train.data",
    "FitResult": "fmnist.train.trainer",
    "fit": "fmnist.train.trainer",
    "train": "fmnist.train.trainer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'fmnist.train' has no attribute {name!r}")
