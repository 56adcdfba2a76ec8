"""The README's sprite: a grid of sample images where each class takes three consecutive rows."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from fmnist.data.export import input_paths
from fmnist.data.loader import Dataset
from fmnist.errors import DataError
from fmnist.fsio import atomic_open

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_sprite(
    images: np.ndarray,
    labels: np.ndarray,
    n_classes: int = 10,
    rows_per_class: int = 3,
    columns: int = 30,
    seed: int = 0,
) -> np.ndarray:
    """A (n_classes*rows_per_class*28, columns*28) uint8 picture; images drawn at random per class."""
    rng = np.random.default_rng(seed)
    side = images.shape[1]
    per_class = rows_per_class * columns
    canvas = np.zeros((n_classes * rows_per_class * side, columns * side), dtype=np.uint8)
    for cls in range(n_classes):
        idx = np.flatnonzero(labels == cls)
        if len(idx) == 0:
            continue
        pick = rng.choice(idx, size=per_class, replace=len(idx) < per_class)
        for j, i in enumerate(pick):
            r, c = cls * rows_per_class + j // columns, j % columns
            canvas[r * side : (r + 1) * side, c * side : (c + 1) * side] = images[i]
    return canvas


def check_image_out(out: Path, ds: Dataset) -> None:
    """Refuse a picture output that is a folder, one of the data files, or an existing non-PNG file."""
    if out.is_dir():
        raise DataError(f"{out}: is a folder; --out names the PNG file to write")
    try:
        resolved = out.resolve()
    except (OSError, RuntimeError):
        return
    if resolved in input_paths(ds):
        raise DataError(f"{out}: is one of the data files being read; choose another --out")
    if os.path.exists(out) and not out.is_file():  # a device, FIFO or socket: never read or replaced
        raise DataError(f"{out}: exists and is not a regular file; not replaced (choose another --out)")
    if out.is_file():
        try:
            with open(out, "rb") as fh:
                head = fh.read(len(PNG_SIGNATURE))
        except OSError:
            return  # the atomic write will say what is wrong
        if head and head != PNG_SIGNATURE:
            raise DataError(f"{out}: exists and is not a PNG picture; not replaced (choose another --out)")


def save_sprite(path: Path, canvas: np.ndarray, invert: bool = False) -> Path:
    """Save as PNG atomically; ``invert`` gives dark articles on white, as the README shows them."""
    picture = 255 - canvas if invert else canvas
    with atomic_open(path, "wb") as fh:
        Image.fromarray(np.ascontiguousarray(picture, dtype=np.uint8)).save(fh, format="PNG")
    return path
