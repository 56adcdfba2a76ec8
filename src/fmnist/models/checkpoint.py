"""Checkpoint files: write them atomically, read them as data, check what they hold.

A model file holds the unwrapped state dict, the architecture and its knobs, class names,
normalisation mean/std, input size, data set and data fingerprint, epoch, metrics and the
training config. ``predict``, ``serve``, ``export`` and ``evaluate`` rebuild everything from it
(:func:`fmnist.models.inference.load_model`); inputs are made by :mod:`fmnist.models.inputs`.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fmnist.errors import FmnistError
from fmnist.fsio import atomic_open
from fmnist.models.record import check_record

FORMAT = "fmnist-model/1"
MODEL_FILE = "model.pt"  # best weights by validation accuracy, inference only
TRAIN_STATE_FILE = "checkpoint.pt"  # last epoch, with optimiser and RNG states, for --resume


def plain(obj: object) -> object:
    """``obj`` with numpy scalars and arrays turned into Python numbers and lists (the same object
    when there are none): what ``weights_only=True`` loading reads back without an allow-list."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        new = {k: plain(v) for k, v in obj.items()}
        return obj if all(new[k] is v for k, v in obj.items()) else new
    if isinstance(obj, list | tuple):
        new = [plain(v) for v in obj]
        return obj if all(a is b for a, b in zip(new, obj, strict=True)) else type(obj)(new)
    return obj


def save(obj: dict, path: str | os.PathLike) -> Path:
    """torch.save through a temporary file and a rename: a kill never leaves half a checkpoint.

    numpy values become plain Python first, so every file written here loads as data (:func:`safe_load`).
    """
    buffer = io.BytesIO()
    torch.save(plain(obj), buffer)
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


# What a checkpoint.pt of fmnist <= 0.x holds besides tensors and plain data: np.random.get_state(), a
# uint32 array. Allowed when reading training checkpoints only (never model files); new ones save lists.
NUMPY_RNG_GLOBALS = (
    (np._core.multiarray._reconstruct, "numpy._core.multiarray._reconstruct"),
    (np._core.multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),  # written under numpy 1.x
    np.ndarray,
    np.dtype,
    np.dtypes.UInt32DType,
)


def safe_load(path: str | os.PathLike, map_location: str | torch.device = "cpu", allow: tuple = ()) -> object:
    """``torch.load`` as data: tensors and plain Python values only (plus the ``allow`` globals).

    Unpickling arbitrary objects runs code, so a file that names any other class or function is
    refused with one line, as is a damaged one.
    """
    path = Path(path)
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        named = re.search(r"GLOBAL (\S+)|Can only build \S+ .* but got (.+?)\s*$", str(exc), flags=re.M)
        if named:
            what = named.group(1) or named.group(2)
            raise FmnistError(
                f"{path}: refused: it holds a Python object ({what}) besides tensors and plain data "
                "(fmnist files are read as data, never run as code)"
            ) from None
        raise FmnistError(f"{path}: not a readable fmnist file (damaged: {type(exc).__name__})") from None
    except Exception as exc:  # torch raises many types for a damaged file (EOFError, RuntimeError, ...)
        raise FmnistError(f"{path}: not a readable fmnist file (damaged: {type(exc).__name__})") from None


def check_tensors(state: object, where: str, what: str = "state_dict") -> dict:
    """A state dict: string keys, tensor values, no NaN or infinity (a diverged run's weights)."""
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise FmnistError(f"{where}: {what!r} must map names to tensors")
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise FmnistError(f"{where}: {what} {name!r} holds NaN or infinite values (a diverged run?)")
    return state


def state_dict_mismatch(expected: dict, given: dict) -> str | None:
    """Why ``given`` cannot load into a model whose state dict is ``expected``; None if it can."""
    missing = [k for k in expected if k not in given]
    extra = [k for k in given if k not in expected]
    if missing or extra:
        parts = [
            f"missing {', '.join(missing[:3])}" if missing else "",
            f"unexpected {', '.join(extra[:3])}" if extra else "",
        ]
        return "; ".join(p for p in parts if p) + ("; ..." if len(missing) > 3 or len(extra) > 3 else "")
    for k, v in expected.items():
        if tuple(v.shape) != tuple(given[k].shape):
            return f"{k} is {list(given[k].shape)} in the file, {list(v.shape)} for this architecture"
    return None


def load_record(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read and check a model record (state dict included); anything else is a one-line error."""
    path = Path(path)
    record = safe_load(path, map_location)
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise FmnistError(f"{path}: not an fmnist model file (format {FORMAT} expected)")
    check_record(record, str(path))
    check_tensors(record["state_dict"], str(path))
    return record


# Names that moved to their own modules, still importable from here for callers not yet updated.
