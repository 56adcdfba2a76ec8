"""Inference: logits for uint8 images (with optional flip TTA), and a saved model rebuilt ready to use.

:func:`logits_of` is the one inference loop: training's validation, ``LoadedModel`` (evaluate,
predict, serve, export checks), the audit and the benchmark all score through it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fmnist.errors import ConfigError, FmnistError
from fmnist.models.calibration import IDENTITY, Calibration, read_calibration
from fmnist.models.checkpoint import MODEL_FILE, load_record, state_dict_mismatch, unwrap
from fmnist.models.inputs import preprocess
from fmnist.models.record import RecordFields, model_digest
from fmnist.models.registry import build_model


@torch.no_grad()
def logits_of(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    mean: float,
    std: float,
    batch_size: int = 1024,
    *,
    flip_tta: bool = False,
    channels_last: bool = True,
) -> torch.Tensor:
    """float32 logits (n, classes) on the model's device for uint8 images (n, 28, 28) or (n, 1, 28, 28).

    Eval mode, in batches of ``batch_size``, in the caller's precision (wrap the call in an autocast
    context for bf16). ``flip_tta``: the logits are the mean of the image's and its left-right
    mirror's logits (test-time augmentation: twice the compute, a few tenths of a point for models
    trained with flips); softmax of that mean is the TTA probability.
    """
    model.eval()
    device = next(model.parameters()).device
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    out = []
    for i in range(0, len(images), batch_size):
        x = preprocess(images[i : i + batch_size], mean, std, device).contiguous(memory_format=memory_format)
        z = model(x).float()
        if flip_tta:
            z = (z + model(x.flip(3)).float()) / 2
        out.append(z)
    return torch.cat(out) if out else torch.empty(0, unwrap(model).classifier.out_features, device=device)


@dataclass
class LoadedModel(RecordFields):
    """A model ready for inference plus everything needed to feed it."""

    model: nn.Module
    record: dict  # the saved record, state dict removed
    path: Path
    calibration: Calibration = IDENTITY  # from calibration.json beside the model (temperature, abstain)
    calibration_note: str = ""  # why there is none, for the user ("" when it was found)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def logits(
        self, images: np.ndarray | torch.Tensor, batch_size: int = 1024, flip_tta: bool = False
    ) -> torch.Tensor:
        """Logits (n, classes) on the CPU for uint8 images (:func:`logits_of`)."""
        return logits_of(self.model, images, self.mean, self.std, batch_size, flip_tta=flip_tta).cpu()

    def predict_proba(
        self, images: np.ndarray | torch.Tensor, batch_size: int = 1024, flip_tta: bool = False
    ) -> np.ndarray:
        """Calibrated probabilities (n, classes): softmax of the logits over the saved temperature."""
        return self.calibration.probabilities(self.logits(images, batch_size, flip_tta).numpy())

    def predict_logits(self, images: np.ndarray | torch.Tensor, batch_size: int = 1024) -> np.ndarray:
        """Raw logits (n, classes) as numpy: what predict scores and abstains on (both backends)."""
        return self.logits(images, batch_size).numpy()

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


def build_for(record: dict, where: str) -> nn.Module:
    """The record's architecture with its weights loaded, on the CPU.

    Built on the meta device first (no memory) to compare shapes, so arch_kwargs that do not match
    the weights (or ask for a giant model) are one line before anything is allocated.
    """
    arch, kwargs, classes = record["arch"], record["arch_kwargs"], record["classes"]
    try:
        with torch.device("meta"):
            skeleton = build_model(arch, num_classes=len(classes), **kwargs)
    except (ConfigError, TypeError, ValueError) as exc:
        raise FmnistError(f"{where}: not a usable fmnist model file ({exc})") from None
    why = state_dict_mismatch(skeleton.state_dict(), record["state_dict"])
    if why:
        raise FmnistError(
            f"{where}: the weights do not fit {arch} {kwargs} with {len(classes)} classes ({why})"
        )
    model = build_model(arch, num_classes=len(classes), **kwargs)
    model.load_state_dict(record["state_dict"])
    return model


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the model saved at ``path`` (a run folder or a .pt file), in eval mode on ``device``."""
    path = resolve_model_path(path)
    record = load_record(path)
    model = build_for(record, str(path))
    del record["state_dict"]
    model = model.to(device).to(memory_format=torch.channels_last).eval()
    calibration, note = read_calibration(path, model_digest(path))
    return LoadedModel(model, record, path, calibration, note)
