"""The whitened first layer (``--whiten``): filters from the patch PCA, frozen during training.

- on correlated images the whitened filters give decorrelated, unit-variance responses;
- each filter comes with its negative; the layer is frozen;
- a real training run keeps the layer exactly as initialised and still learns;
- a model whose first conv does not read the grayscale image is refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fmnist.errors import ConfigError
from fmnist.models import build_model
from fmnist.train import fit, load_training_data, make_config
from fmnist.train.whiten import first_conv, patch_eigens, whiten_first_layer


def correlated_images(n: int = 400, seed: int = 0) -> torch.Tensor:
    """uint8 (n, 1, 28, 28) blurred noise: neighbouring pixels strongly correlated, like real images."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, 1, 28, 28, generator=gen)
    blurred = F.avg_pool2d(F.pad(noise, (2, 2, 2, 2), mode="reflect"), 5, stride=1)
    return (blurred * 255).round().clamp(0, 255).to(torch.uint8)


def test_whitened_filters_decorrelate_the_patches():
    images = correlated_images()
    model = build_model("fastcnn", width=16)
    mean, std = images.float().div(255).mean().item(), images.float().div(255).std().item()
    assert whiten_first_layer(model, images, mean, std, eps=1e-6) == 16
    conv = first_conv(model)
    x = (images.float().div(255) - mean) / std
    responses = F.conv2d(x, conv.weight[:8], padding=1)  # the same zero-padded patches the PCA saw
    flat = responses.permute(1, 0, 2, 3).reshape(8, -1).double()
    cov = torch.cov(flat)
    assert torch.allclose(torch.diag(cov), torch.ones(8, dtype=torch.double), atol=0.02), torch.diag(cov)
    off = cov - torch.diag(torch.diag(cov))
    assert off.abs().max() < 0.02, off
    values, _ = patch_eigens(images, 3, mean, std)
    assert values[0] > 10 * values[-1]  # the images were correlated: whitening had work to do


def test_filters_come_in_sign_pairs_and_are_frozen():
    images = correlated_images(100)
    model = build_model("fastcnn", width=16)
    whiten_first_layer(model, images, 0.5, 0.2)
    weight = first_conv(model).weight
    assert torch.equal(weight[8:], -weight[:8])
    assert not weight.requires_grad


def test_first_conv_must_read_the_grayscale_image():
    rgb = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    assert first_conv(rgb) is None
    assert whiten_first_layer(rgb, correlated_images(10), 0.5, 0.2) == 0


def test_training_keeps_the_whitened_layer_and_learns(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("FMNIST_CACHE", str(tmp_path / "cache"))
    cfg = make_config(
        "cpu-60s",
        epochs=2,
        batch_size=64,
        lr=0.05,
        train_limit=3000,
        val_size=300,  # the preset trains on every image; the band below was measured on 300 held out
        threads=1,
        seed=0,
        channels_last=False,
    )
    assert cfg.whiten  # the preset whitens
    data = load_training_data(cfg, torch.device("cpu"))
    expected = build_model("fastcnn", width=16)
    whiten_first_layer(expected, data.train_x, data.mean, data.std)
    result = fit(cfg, data, None, log=None, progress_bar=False)
    assert torch.equal(first_conv(result.model).weight, first_conv(expected).weight)
    # Measured on 300 validation images: 0.840 (seed 0, bf16 on an AVX512-BF16 CPU), 0.817 in fp32, seeds 1-2
    # 0.813-0.840; 0.767 without --whiten. The band (0.840 -0.055/+0.055) fails a lost whitening gain.
    assert 0.785 <= result.best_val_acc <= 0.895, result.best_val_acc


def test_whiten_on_a_model_without_a_grayscale_conv_is_a_config_error(monkeypatch, tmp_path):
    from fmnist.train import trainer

    monkeypatch.setattr(trainer, "build_from_config", lambda *a, **k: nn.Sequential(nn.Conv2d(3, 4, 3)))
    monkeypatch.setenv("FMNIST_CACHE", str(tmp_path / "cache"))
    cfg = make_config(whiten=True, epochs=1, train_limit=200, threads=1)
    data = load_training_data(cfg, torch.device("cpu"))
    with pytest.raises(ConfigError, match="--whiten needs a first layer"):
        fit(cfg, data, None, log=None, progress_bar=False)
