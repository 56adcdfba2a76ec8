"""What every loaded model (torch or ONNX) exposes from its saved record; no torch import.

:func:`check_record` is the one place that says what a model record's fields must be: a file that
passes it can be fed to every command without a ``KeyError`` or a ``TypeError`` half-way through.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from pathlib import Path
from typing import Any

from fmnist.errors import FmnistError

INPUT_SIZE = [1, 28, 28]  # the only input every model and `preprocess` take
MAX_CLASSES = 10_000
RECORD_KEYS = (  # every field model_record writes besides "format"
    "arch",
    "arch_kwargs",
    "state_dict",
    "classes",
    "mean",
    "std",
    "input_size",
    "dataset",
    "data_fingerprint",
    "epoch",
    "metrics",
    "config",
)


class RecordFields:
    """Mixin for objects with a ``record`` dict: class names and the normalisation to feed them."""

    record: dict

    @property
    def classes(self) -> list[str]:
        return self.record["classes"]

    @property
    def mean(self) -> float:
        return self.record["mean"]

    @property
    def std(self) -> float:
        return self.record["std"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _bad(where: str, what: str) -> FmnistError:
    return FmnistError(f"{where}: not a usable fmnist model file ({what})")


def check_inputs(record: dict, where: str) -> None:
    """The fields every backend needs to feed a model: classes, mean, std, input size."""
    bad = functools.partial(_bad, where)

    classes = record.get("classes")
    if not isinstance(classes, list | tuple) or not 1 <= len(classes) <= MAX_CLASSES:
        raise bad("'classes' must be a list of 1 to 10000 class names")
    if not all(isinstance(c, str) for c in classes):
        raise bad("'classes' must hold strings only")
    if not _is_number(record.get("mean")):
        raise bad(f"'mean' must be a finite number, got {record.get('mean')!r}")
    std = record.get("std")
    if not _is_number(std) or std <= 0:
        raise bad(f"'std' must be a finite number above 0, got {std!r}")
    size = record.get("input_size", INPUT_SIZE)
    if not isinstance(size, list | tuple) or list(size) != INPUT_SIZE:
        raise bad(f"'input_size' must be {INPUT_SIZE}, got {size!r}")


def check_record(record: dict, where: str) -> dict:
    """Raise one line if ``record`` (a torch model record, state dict included) is not what
    :func:`fmnist.models.checkpoint.model_record` writes; return it."""
    bad = functools.partial(_bad, where)

    missing = [key for key in RECORD_KEYS if key not in record]
    if missing:
        raise bad(f"missing {', '.join(repr(k) for k in missing)}")
    for key in ("arch", "dataset", "data_fingerprint"):
        if not isinstance(record[key], str):
            raise bad(f"{key!r} must be a string, got {type(record[key]).__name__}")
    if not record["arch"]:
        raise bad("'arch' is empty")
    for key in ("arch_kwargs", "state_dict", "metrics", "config"):
        if not isinstance(record[key], dict) or not all(isinstance(k, str) for k in record[key]):
            raise bad(f"{key!r} must be a dict with string keys")
    for key, value in record["arch_kwargs"].items():
        if not _is_int(value) or value < 1:
            raise bad(f"arch_kwargs {key!r} must be a positive integer, got {value!r}")
    if not _is_int(record["epoch"]) or record["epoch"] < 0:
        raise bad(f"'epoch' must be an integer >= 0, got {record['epoch']!r}")
    check_inputs(record, where)
    return record


def model_digest(path: str | os.PathLike) -> str:
    """First 16 hex digits of the SHA-256 of a model file: an export records it as ``source_sha256`` and
    an evaluation as ``model_sha256``, so a figure is only ever shown for the model.pt it was made from."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
