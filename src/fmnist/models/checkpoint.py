"""Checkpoints that describe themselves, and the one way to turn uint8 images into model inputs.

A model file holds the unwrapped state dict, the architecture and its knobs, class names,
normalisation mean/std, input size, data set and data fingerprint, epoch, metrics and the
training config. ``predict``, ``serve``, ``export`` and ``evaluate`` rebuild everything from it,
through :func:`preprocess`.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fmnist.errors import FmnistError
from fmnist.fsio import atomic_open
from fmnist.models.record import RecordFields
from fmnist.models.registry import build_model

FORMAT = "fmnist-model/1"
MODEL_FILE = "model.pt"  # best weights by validation accuracy, inference only
TRAIN_STATE_FILE = "checkpoint.pt"  # last epoch, with optimiser and RNG states, for --resume


def save(obj: dict, path: str | os.PathLike) -> Path:
    """torch.save through a temporary file and a rename: a kill never leaves half a checkpoint."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_open(path, "wb") as fh:
        fh.write(buffer.getbuffer())
    return Path(path)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module under DistributedDataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def model_record(
    model: nn.Module,
    *,
    arch: str,
    arch_kwargs: dict,
    classes: tuple[str, ...] | list[str],
    mean: float,
    std: float,
    dataset: str,
    fingerprint: str,
    epoch: int,
    metrics: dict,
    config: dict,
) -> dict:
    """The inference-only record saved as ``model.pt``."""
    state = {k: v.detach().cpu().clone() for k, v in unwrap(model).state_dict().items()}
    return {
        "format": FORMAT,
        "arch": arch,
        "arch_kwargs": dict(arch_kwargs),
        "state_dict": state,
        "classes": list(classes),
        "mean": float(mean),
        "std": float(std),
        "input_size": [1, 28, 28],
        "dataset": dataset,
        "data_fingerprint": fingerprint,
        "epoch": int(epoch),
        "metrics": dict(metrics),
        "config": dict(config),
    }


def preprocess(
    images: np.ndarray | torch.Tensor, mean: float, std: float, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """uint8 (n, 28, 28) or (n, 1, 28, 28), article light on black -> normalised float (n, 1, 28, 28)."""
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.array(images, dtype=np.uint8))
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
        raise FmnistError(f"expected images of shape (n, 28, 28), got {tuple(x.shape)}")
    return ((x.to(device=device, dtype=torch.float32) / 255.0) - mean) / std


@dataclass
class LoadedModel(RecordFields):
    """A model ready for inference plus everything needed to feed it."""

    model: nn.Module
    record: dict  # the saved record, state dict removed
    path: Path

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def logits(
        self, images: np.ndarray | torch.Tensor, batch_size: int = 1024, flip_tta: bool = False
    ) -> torch.Tensor:
        """Logits (n, classes) for uint8 images, computed in batches.

        ``flip_tta`` averages them with the logits of the left-right mirror image (test-time
        augmentation: twice the compute, a few tenths of a point for models trained with flips).
        """
        self.model.eval()
        out = []
        for i in range(0, len(images), batch_size):
            x = preprocess(images[i : i + batch_size], self.mean, self.std, self.device)
            x = x.contiguous(memory_format=torch.channels_last)
            z = self.model(x).float()
            if flip_tta:
                z = (z + self.model(x.flip(3)).float()) / 2
            out.append(z.cpu())
        return torch.cat(out) if out else torch.empty(0, len(self.classes))

    def predict_proba(
        self, images: np.ndarray | torch.Tensor, batch_size: int = 1024, flip_tta: bool = False
    ) -> np.ndarray:
        return torch.softmax(self.logits(images, batch_size, flip_tta), dim=1).numpy()

    @torch.no_grad()
    def features(self, images: np.ndarray | torch.Tensor, batch_size: int = 1024) -> np.ndarray:
        """Penultimate-layer features (n, d) for uint8 images."""
        self.model.eval()
        net = unwrap(self.model)
        out = [
            net.features(preprocess(images[i : i + batch_size], self.mean, self.std, self.device))
            .float()
            .cpu()
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(out).numpy()


def resolve_model_path(path: str | os.PathLike) -> Path:
    """A run folder means its ``model.pt``; a file is taken as it is."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.exists():
        raise FmnistError(f"{path}: no such model file (train one with `fmnist train`)")
    return path


def load_record(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint dict; anything that is not one is a one-line error."""
    path = Path(path)
    try:
        record = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise FmnistError(f"{path}: not a readable fmnist checkpoint ({type(exc).__name__})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise FmnistError(f"{path}: not an fmnist model file (format {FORMAT} expected)")
    return record


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the model saved at ``path`` (a run folder or a .pt file), in eval mode on ``device``."""
    path = resolve_model_path(path)
    record = load_record(path)
    model = build_model(record["arch"], num_classes=len(record["classes"]), **record["arch_kwargs"])
    model.load_state_dict(record.pop("state_dict"))
    model = model.to(device).to(memory_format=torch.channels_last).eval()
    return LoadedModel(model, record, path)
