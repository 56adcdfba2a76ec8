"""Class balance and per-class pixel statistics: the quick look that catches a skewed or odd split."""

from __future__ import annotations

import numpy as np

INK = 1  # a pixel with value >= INK is ink: the background of Fashion-MNIST is exactly 0 (50% of pixels)
BRIGHT = 128  # grey level counted as bright


def class_balance(labels_by_split: dict[str, np.ndarray], n_classes: int) -> dict[str, list[int]]:
    """Images per class in each split."""
    return {
        split: np.bincount(np.asarray(y), minlength=n_classes).tolist()
        for split, y in labels_by_split.items()
    }


def pixel_stats(images: np.ndarray) -> dict[str, float]:
    """Figures for one group of (n, 28, 28) uint8 images; intensities as fractions of 255."""
    x = np.asarray(images)
    if len(x) == 0:
        return {"images": 0}
    per_image = x.reshape(len(x), -1).mean(axis=1) / 255.0
    ink = x >= INK
    rows, cols = ink.any(axis=2), ink.any(axis=1)  # (n, 28) each: which rows / columns hold ink

    def extent(mask: np.ndarray) -> np.ndarray:
        first = mask.argmax(axis=1)
        last = mask.shape[1] - 1 - mask[:, ::-1].argmax(axis=1)
        return np.where(mask.any(axis=1), last - first + 1, 0)

    return {
        "images": int(len(x)),
        "mean_intensity": float(per_image.mean()),  # mean pixel / 255
        "std_of_image_means": float(per_image.std()),  # how much brightness varies between images
        "ink_fraction": float(ink.mean()),  # pixels >= INK
        "bright_fraction": float((x >= BRIGHT).mean()),  # pixels >= BRIGHT
        "mean_height": float(extent(rows).mean()),  # rows spanned by ink, in pixels
        "mean_width": float(extent(cols).mean()),  # columns spanned by ink, in pixels
        "blank_images": int((~ink.reshape(len(x), -1).any(axis=1)).sum()),  # no ink at all
    }


def per_class_stats(images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]) -> list[dict]:
    """One row of :func:`pixel_stats` per class, plus the class index and name."""
    labels = np.asarray(labels)
    return [
        {"label": c, "class": name, **pixel_stats(np.asarray(images)[labels == c])}
        for c, name in enumerate(classes)
    ]


def class_means(images: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, 28, 28) uint8: the mean image of each class (a picture of what the class looks like)."""
    x, labels = np.asarray(images), np.asarray(labels)
    out = np.zeros((n_classes, *x.shape[1:]), dtype=np.uint8)
    for c in range(n_classes):
        if np.any(labels == c):
            out[c] = np.round(x[labels == c].mean(axis=0, dtype=np.float64)).astype(np.uint8)
    return out
