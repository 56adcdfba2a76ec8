"""Training: config, device-resident data, batch augmentation, the loop, checkpoints, resume, DDP."""

from fmnist._lazy import lazy_getattr

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
__getattr__ = lazy_getattr(__name__, _EXPORTS)
