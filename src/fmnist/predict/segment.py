"""Separate the garment from a busy background (a bed, a floor, a hanger) before the data set's steps.

Fashion-MNIST's packshots were shot on white, so trimming to "pixels unlike the corner" was enough.
A photo of a shirt on a patterned duvet is not: the trim keeps the duvet. OpenCV's GrabCut, seeded
with a rectangle a little inside the border (the border is taken as background, the inside as
"probably garment"), fits colour models of both and cuts along the edges between them. The largest
connected part is kept and its holes filled (a dark print on a T-shirt is still the T-shirt).

Chosen on ../shared/photos (the validation photos; benchmarks/RESULTS.md "Real photos"). Imports
numpy and OpenCV only, never torch: the ONNX serving path uses this module too.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np


@dataclasses.dataclass(frozen=True)
class SegmentSettings:
    """How GrabCut is run: on the photo shrunk to ``side`` pixels, seeded ``inset`` inside the border."""

    side: int = 200  # longest side GrabCut works at (its cost grows with the pixels)
    inset: float = 0.05  # the seed rectangle starts this fraction of each side inside the border
    iterations: int = 5  # GrabCut's own refinement passes
    min_area: float = 0.01  # a garment smaller than this fraction of the picture is "not found"


DEFAULT_SEGMENT = SegmentSettings()


def shrink_to(rgb: np.ndarray, side: int) -> np.ndarray:
    """Area-averaged so the longest side is at most ``side`` (smaller pictures come back as they are)."""
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return rgb
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def largest_part(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected part of a boolean mask, with its holes filled."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask, dtype=bool)
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    part = (labels == biggest).astype(np.uint8)
    # Holes: background regions not connected to the border (flood-fill the outside from a padded corner).
    padded = np.pad(part, 1)
    outside = padded.copy()
    cv2.floodFill(outside, None, (0, 0), 1)
    holes = outside[1:-1, 1:-1] == 0
    return (part == 1) | holes


def garment_mask(rgb: np.ndarray, settings: SegmentSettings = DEFAULT_SEGMENT) -> np.ndarray | None:
    """Boolean (h, w) mask of the garment in an RGB uint8 photo, or None when GrabCut finds none.

    Give it the photo already shrunk to ``settings.side`` (:func:`shrink_to`): GrabCut's time grows
    with the pixels, and a 28-pixel result needs no more. Deterministic: OpenCV's random generator
    is reseeded before each cut.
    """
    small = np.ascontiguousarray(rgb)
    sh, sw = small.shape[:2]
    dx, dy = max(1, round(settings.inset * sw)), max(1, round(settings.inset * sh))
    if sw - 2 * dx < 2 or sh - 2 * dy < 2:
        return None
    labels = np.zeros((sh, sw), np.uint8)
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(
            small,
            labels,
            (dx, dy, sw - 2 * dx, sh - 2 * dy),
            background,
            foreground,
            settings.iterations,
            cv2.GC_INIT_WITH_RECT,
        )
    except cv2.error:  # a picture with one colour: GrabCut cannot fit two models
        return None
    found = largest_part((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD))
    return None if found.mean() < settings.min_area else found
