"""The README's sprite: a grid of sample images where each class takes three consecutive rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmnist.fsio import atomic_open


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


def save_sprite(path: Path, canvas: np.ndarray, invert: bool = False) -> Path:
    """Save as PNG atomically; ``invert`` gives dark articles on white, as the README shows them."""
    from PIL import Image

    picture = 255 - canvas if invert else canvas
    with atomic_open(path, "wb") as fh:
        Image.fromarray(np.ascontiguousarray(picture, dtype=np.uint8)).save(fh, format="PNG")
    return path
