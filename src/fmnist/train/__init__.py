"""Training: config, tensor-resident data, batch augmentation, the loop, checkpoints and resume."""

from fmnist.train.config import PRESETS, TrainConfig, make_config
from fmnist.train.data import TrainingData, load_training_data
from fmnist.train.trainer import FitResult, fit, train

__all__ = ["PRESETS", "FitResult", "TrainConfig", "TrainingData", "fit", "load_training_data", "make_config", "train"]
