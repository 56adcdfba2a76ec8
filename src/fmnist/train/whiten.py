"""A whitened first layer: the first conv's filters set from the PCA of training patches, then frozen.

Why: in short schedules the network spends its first steps learning decorrelated edge and
blob detectors; starting from the patch covariance's eigenvectors (scaled by 1/sqrt(eigenvalue),
each with its negative so a ReLU keeps both signs, as airbench does for CIFAR-10) skips that.
Only the training images are read, so the test set stays unseen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fmnist.models.inputs import normalise


def first_conv(model: nn.Module) -> nn.Conv2d | None:
    """The first convolution of ``model`` if it reads the one grayscale channel, else None."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return conv if conv is not None and conv.in_channels == 1 and conv.groups == 1 else None


@torch.no_grad()
def patch_eigens(
    images_uint8: torch.Tensor, kernel: int, mean: float, std: float, max_images: int = 5000
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (descending) and eigenvectors (columns) of the kxk patch covariance, normalised pixels."""
    x = normalise(images_uint8[:max_images], mean, std)  # (n, 1, 28, 28)
    patches = F.unfold(x, kernel, padding=kernel // 2)  # (n, k*k, positions)
    patches = patches.transpose(1, 2).reshape(-1, kernel * kernel).double()
    patches = patches - patches.mean(0)
    cov = patches.T @ patches / len(patches)
    values, vectors = torch.linalg.eigh(cov)  # ascending
    return values.flip(0), vectors.flip(1)


@torch.no_grad()
def whiten_first_layer(
    model: nn.Module, images_uint8: torch.Tensor, mean: float, std: float, eps: float = 1e-2
) -> int:
    """Set and freeze the first conv from the patch PCA; return how many filters were set (0: no such layer).

    With C output channels and kxk kernels, the top min(C // 2, k*k) components and their negatives
    fill the first filters; any further filters keep their random initialisation.
    """
    conv = first_conv(model)
    if conv is None or conv.kernel_size[0] != conv.kernel_size[1]:
        return 0
    k = conv.kernel_size[0]
    values, vectors = patch_eigens(images_uint8, k, mean, std)
    top = min(conv.out_channels // 2, k * k)
    filters = (vectors[:, :top] / torch.sqrt(values[:top] + eps)).T.reshape(top, 1, k, k)
    weight = conv.weight
    weight[: 2 * top] = torch.cat([filters, -filters]).to(weight.dtype)
    weight.requires_grad_(False)
    if conv.bias is not None:
        conv.bias.zero_()
        conv.bias.requires_grad_(False)
    return 2 * top
