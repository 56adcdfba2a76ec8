"""The one way uint8 images become model inputs: ``(pixels / 255 - mean) / std``, shape (n, 1, 28, 28).

Every path that feeds a model goes through here: training batches, validation, ``LoadedModel``,
the whitened first layer, TorchScript checks and the ONNX runtime. :func:`standardise` is the
formula, written once for torch tensors and numpy arrays alike; the torch and numpy front ends
differ only in how they turn uint8 into float32. No torch import at module level: the ONNX path
(:mod:`fmnist.export.onnx_runtime`) must run where torch is not installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fmnist.errors import FmnistError
from fmnist.models.record import INPUT_SIZE

if TYPE_CHECKING:
    import torch

PIXEL_MAX = 255.0  # uint8 white: pixels / PIXEL_MAX lie in [0, 1], article light on black


def standardise(pixels, mean: float, std: float):
    """Pixels in [0, 1] (float32 tensor or array) -> zero mean, unit deviation over the training set."""
    return (pixels - mean) / std


def to_unit(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 tensor -> float32 in [0, 1], a new tensor (augmentation runs in this space: black pads)."""
    return images_uint8.float() / PIXEL_MAX


def normalise(images_uint8: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 tensor (any shape) -> normalised float32 tensor on the same device."""
    return standardise(to_unit(images_uint8), mean, std)


def as_batch(images):
    """(n, 28, 28) or (n, 1, 28, 28), numpy or torch -> (n, 1, 28, 28); any other shape is one line."""
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or list(images.shape[1:]) != INPUT_SIZE:
        raise FmnistError(f"expected images of shape (n, 28, 28), got {tuple(images.shape)}")
    return images


def preprocess(
    images: np.ndarray | torch.Tensor, mean: float, std: float, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """uint8 images (numpy or torch) -> normalised float32 (n, 1, 28, 28) on ``device``."""
    import torch  # here: this module stays importable without torch (see above)

    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.array(images, dtype=np.uint8))
    return normalise(as_batch(x).to(device), mean, std)


def preprocess_numpy(images: np.ndarray, mean: float, std: float) -> np.ndarray:
    """The numpy twin of :func:`preprocess` (for onnxruntime): float32 (n, 1, 28, 28), C-contiguous.

    float32 throughout, as torch computes, so both paths give the same inputs to the last bit.
    """
    x = as_batch(np.asarray(images)).astype(np.float32) / np.float32(PIXEL_MAX)
    return np.ascontiguousarray(standardise(x, np.float32(mean), np.float32(std)))
