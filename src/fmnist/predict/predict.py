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
from fmnist.export.onnx_runtime import OnnxModel
from fmnist.models.calibration import Calibration
from fmnist.predict.image_decode import DEFAULT_LIMITS, DecodeLimits, ImageError, ImageSource, describe
from fmnist.predict.preprocess_photo import SHARPEN, prepare_image
from fmnist.train.device import check_device_name, resolve_device


class Model(Protocol):
    """What prediction needs from a model: both backends provide it."""

    record: dict
    path: Path  # the model file (model.pt or .onnx) it was loaded from
    calibration: Calibration  # its temperature and abstain rule, applied to the raw logits

    @property
    def classes(self) -> list[str]: ...

    def predict_logits(self, images: np.ndarray, batch_size: int = 1024) -> np.ndarray: ...

    def predict_proba(self, images: np.ndarray, batch_size: int = 1024) -> np.ndarray: ...


def load(path: str | os.PathLike, backend: str = "auto", device: str = "cpu") -> Model:
    """A run folder or ``model.pt`` -> the torch model; ``*.onnx`` (or ``backend='onnx'``) -> onnxruntime.

    ``device`` goes through :func:`fmnist.train.device.resolve_device` (auto, cpu, cuda, cuda:N,
    mps; it must exist here). ONNX models run on the CPU (onnxruntime's CPU provider), so with
    them only auto and cpu are accepted.
    """
    path = Path(path)
    if backend not in ("auto", "torch", "onnx"):
        raise FmnistError(f"unknown backend {backend!r}; choose auto, torch or onnx")
    check_device_name(device)
    if backend == "onnx" or (backend == "auto" and path.suffix.lower() == ".onnx"):
        if device not in ("auto", "cpu"):
            raise FmnistError(
                f"--device {device}: ONNX models run on the CPU here (onnxruntime); use --device cpu"
            )
        return OnnxModel(path)
    from fmnist.models.inference import load_model  # here: the ONNX path never imports torch

    return load_model(path, device=resolve_device(device))


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
    limits: DecodeLimits = DEFAULT_LIMITS,
    batch_size: int = 1024,
) -> list[dict]:
    """Classify each input (path, PIL image, array, bytes, file object), prepared as in the data set.

    Returns one dict per input, in order: ``input`` (its name), ``label`` and ``probability``
    (the top class, calibrated when the model has a calibration), ``top`` (the ``top_k`` best, see
    :func:`rank`), ``abstain`` (True: the top probability is under the model's abstain threshold, "not
    one of the ten classes?"; the guesses are still given), ``abstain_score`` (what the threshold is
    compared with: see :mod:`fmnist.models.calibration`) and ``processed`` (the uint8 28x28 the
    model saw). With ``on_error="report"`` a bad input gives
    ``{"input", "error"}`` instead of raising, and the good ones are still classified.
    Each picture's size is checked from its header before it is decoded (``limits``: see
    :func:`fmnist.predict.image_decode.probe_image`).
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
            images.append(
                prepare_image(
                    item,
                    name=name,
                    sharpen=sharpen,
                    limits=limits,
                )
            )
        except ImageError as exc:
            if on_error == "raise":
                raise
            results.append({"input": name, "error": str(exc)})
            continue
        good.append(len(results))
        results.append({"input": name})
    if images:
        batch = np.stack(images)  # (n, 28, 28) uint8
        logits = model.predict_logits(batch, batch_size=batch_size)
        calibration = model.calibration
        probabilities, scores = calibration.probabilities(logits), calibration.scores(logits)
        for slot, image, p, score in zip(good, batch, probabilities, scores, strict=True):
            best = rank(p, classes, top_k)
            results[slot].update(
                label=best[0]["class"],
                probability=best[0]["probability"],
                abstain=bool(score < calibration.abstain_threshold),
                abstain_score=float(score),
                top=best,
                processed=image,
            )
    return results
