"""Classify pictures with a saved model: top-k classes and probabilities per input.

The model is either a PyTorch checkpoint (a run folder or ``model.pt``, loaded through
:func:`fmnist.models.load_model`) or an ONNX export (``*.onnx``, run by onnxruntime). torch is
imported only for the first kind, so ONNX prediction works without it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fmnist.errors import FmnistError
from fmnist.predict.preprocess_photo import (
    DEFAULT_MAX_PIXELS,
    SHARPEN,
    ImageError,
    ImageSource,
    describe,
    prepare_image,
)


class Model(Protocol):
    """What prediction needs from a model: both backends provide it."""

    record: dict

    @property
    def classes(self) -> list[str]: ...

    def predict_proba(self, images: np.ndarray, batch_size: int = 1024) -> np.ndarray: ...


def load(path: str | os.PathLike, backend: str = "auto", device: str = "cpu") -> Model:
    """A run folder or ``model.pt`` -> the torch model; ``*.onnx`` (or ``backend='onnx'``) -> onnxruntime."""
    path = Path(path)
    if backend not in ("auto", "torch", "onnx"):
        raise FmnistError(f"unknown backend {backend!r}; choose auto, torch or onnx")
    if backend == "onnx" or (backend == "auto" and path.suffix.lower() == ".onnx"):
        from fmnist.export.onnx_runtime import OnnxModel

        return OnnxModel(path)
    from fmnist.models.checkpoint import load_model

    return load_model(path, device=resolve_device(device))


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when present; an explicit device that is missing is a one-line error."""
    if device == "cpu":
        return device
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FmnistError(f"--device {device}: no CUDA device here (use cpu)")
    try:
        torch.device(device)
    except RuntimeError as exc:
        raise FmnistError(f"--device {device}: {exc}") from None
    return device


def rank(probabilities: np.ndarray, classes: Sequence[str], k: int) -> list[dict]:
    """The k most probable classes, best first: ``[{"class", "index", "probability"}, ...]``."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [{"class": classes[i], "index": int(i), "probability": float(probabilities[i])} for i in order]


def _as_list(inputs: ImageSource | Iterable[ImageSource]) -> list:
    """One input or many; a 3-D array (n, h, w) with no colour axis is a batch of grayscale images."""
    if isinstance(inputs, np.ndarray):
        if inputs.ndim == 3 and inputs.shape[-1] not in (1, 3, 4):
            return list(inputs)
        return [inputs]
    if (
        isinstance(inputs, str | os.PathLike | bytes)
        or hasattr(inputs, "read")
        or hasattr(inputs, "getpixel")
    ):
        return [inputs]
    return list(inputs)


def predict(
    model_or_path: Model | str | os.PathLike,
    inputs: ImageSource | Iterable[ImageSource],
    top_k: int = 3,
    *,
    on_error: str = "raise",
    names: Sequence[str] | None = None,
    sharpen: float = SHARPEN,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    batch_size: int = 1024,
) -> list[dict]:
    """Classify each input (path, PIL image, array, bytes, file object), prepared as in the data set.

    Returns one dict per input, in order: ``input`` (its name), ``label`` and ``probability``
    (the top class), ``top`` (the ``top_k`` best, see :func:`rank`) and ``processed`` (the
    uint8 28x28 the model saw). With ``on_error="report"`` a bad input gives
    ``{"input", "error"}`` instead of raising, and the good ones are still classified.
    """
    if on_error not in ("raise", "report"):
        raise FmnistError(f"on_error must be 'raise' or 'report', not {on_error!r}")
    model = model_or_path if hasattr(model_or_path, "predict_proba") else load(model_or_path)
    classes = list(model.classes)
    if not 1 <= top_k <= len(classes):
        raise FmnistError(f"top-k must be between 1 and {len(classes)}, got {top_k}")
    items = _as_list(inputs)
    results: list[dict[str, Any]] = []
    good: list[int] = []
    images: list[np.ndarray] = []
    for i, item in enumerate(items):
        name = names[i] if names is not None else describe(item, i)
        try:
            images.append(prepare_image(item, name=name, sharpen=sharpen, max_pixels=max_pixels))
        except ImageError as exc:
            if on_error == "raise":
                raise
            results.append({"input": name, "error": str(exc)})
            continue
        good.append(len(results))
        results.append({"input": name})
    if images:
        batch = np.stack(images)  # (n, 28, 28) uint8
        probabilities = model.predict_proba(batch, batch_size=batch_size)
        for slot, image, p in zip(good, batch, probabilities, strict=True):
            best = rank(p, classes, top_k)
            results[slot].update(
                label=best[0]["class"], probability=best[0]["probability"], top=best, processed=image
            )
    return results
