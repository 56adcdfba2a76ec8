"""The evaluation's pictures: confusion heat map and a gallery of confidently wrong images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure list

from fmnist.fsio import atomic_open


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as PNG, atomically."""
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")
    return path


def confusion_png(cm: np.ndarray, classes: list[str], path: Path, title: str) -> Path:
    fig = Figure(figsize=(8, 7))
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    n = len(classes)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if cm[i, j] > threshold else "black",
            )
    fig.tight_layout()
    return save_figure(fig, path)


def gallery_png(images: np.ndarray, captions: list[str], path: Path, title: str, columns: int = 5) -> Path:
    """A grid of 28x28 images, each with a caption (e.g. 'true Shirt / pred T-shirt 0.98')."""
    rows = max(1, -(-len(images) // columns))
    fig = Figure(figsize=(columns * 2.1, rows * 2.4))
    axes = fig.subplots(rows, columns)
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, img, caption in zip(np.atleast_1d(axes).ravel(), images, captions, strict=False):
        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
        ax.set_title(caption, fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
