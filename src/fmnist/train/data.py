"""Training data held as tensors on the training device: uint8 images, long labels, split once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fmnist.data.loader import load_dataset, stratified_split
from fmnist.errors import ConfigError
from fmnist.models.inputs import to_unit
from fmnist.train.config import validation_size


@dataclass
class TrainingData:
    """What a training run reads: train/val tensors on ``device`` plus normalisation and provenance."""

    train_x: torch.Tensor  # (n, 1, 28, 28) uint8 on the device
    train_y: torch.Tensor  # (n,) int64
    val_x: torch.Tensor  # (m, 1, 28, 28) uint8; m may be 0
    val_y: torch.Tensor
    mean: float  # of the training pixels in [0, 1] (fmnist.models.inputs.to_unit)
    std: float
    classes: tuple[str, ...]
    dataset: str = "fashion"
    fingerprint: str = "unknown"
    source: str = ""

    @classmethod
    def from_arrays(
        cls,
        images: np.ndarray,
        labels: np.ndarray,
        classes: tuple[str, ...],
        device: torch.device,
        val_size: int = 0,
        seed: int = 0,
        **meta,
    ) -> TrainingData:
        """Split ``images`` (n, 28, 28) uint8 into train/val (stratified, seeded) and move them to ``device``."""
        images = np.asarray(images)
        labels = np.asarray(labels)
        if val_size:
            train_idx, val_idx = stratified_split(labels, val_size, seed)
        else:
            train_idx, val_idx = np.arange(len(labels)), np.empty(0, dtype=int)

        def to_dev(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            x = torch.from_numpy(np.ascontiguousarray(images[idx])).unsqueeze(1).to(device)
            y = torch.from_numpy(labels[idx].astype(np.int64)).to(device)
            return x, y

        train_x, train_y = to_dev(train_idx)
        val_x, val_y = to_dev(val_idx)
        pixels = to_unit(train_x)  # the model's input scale, [0, 1]
        return cls(
            train_x, train_y, val_x, val_y, pixels.mean().item(), pixels.std().item(), tuple(classes), **meta
        )


def load_training_data(cfg, device: torch.device) -> TrainingData:
    """Load the configured data set, apply ``train_limit``, carve the validation split."""
    ds = load_dataset(cfg.dataset, cfg.data_dir, quiet=False)
    images, labels = ds.train.images, ds.train.labels
    if cfg.train_limit is not None:
        images, labels = images[: cfg.train_limit], labels[: cfg.train_limit]
    n = len(labels)
    val_size = validation_size(cfg.val_size, n, cfg.train_limit is not None, len(ds.classes))
    if val_size >= n:
        raise ConfigError(f"--val-size {cfg.val_size} leaves no training images out of {n}")
    return TrainingData.from_arrays(
        images,
        labels,
        ds.classes,
        device,
        val_size,
        cfg.seed,
        dataset=ds.name,
        fingerprint=ds.fingerprint,
        source=ds.files.describe(),
    )
