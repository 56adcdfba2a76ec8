"""Export a loaded data set as NPZ, CSV (``label,pixel1..pixel784``) or PNG folders, and read them back.

Every export is atomic: a file goes through a temporary name; a PNG tree is written into a
temporary folder and renamed into place, so an interrupted export never looks complete.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from fmnist.data.loader import Dataset
from fmnist.errors import DataError
from fmnist.fsio import atomic_open

FORMATS = ("npz", "csv", "png")


def class_dirname(index: int, name: str) -> str:
    """``3-dress``: index first (sorts right), then a file-system-safe slug of the class name."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return f"{index}-{slug}"


def _subset(ds: Dataset, kind: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    split = ds.split(kind)
    n = len(split) if limit is None else min(limit, len(split))
    return np.asarray(split.images[:n]), np.asarray(split.labels[:n])


def export(
    ds: Dataset, out: Path, fmt: str, kinds: tuple[str, ...] = ("train", "t10k"), limit: int | None = None
) -> list[Path]:
    """Write ``ds`` under ``out``; returns the files or folders written."""
    if fmt not in FORMATS:
        raise DataError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if fmt == "npz":
        arrays = {}
        for kind in kinds:
            images, labels = _subset(ds, kind, limit)
            arrays[f"x_{kind}"], arrays[f"y_{kind}"] = images, labels
        path = out / f"{ds.name}.npz"
        with atomic_open(path, "wb") as fh:
            np.savez_compressed(fh, classes=np.array(ds.classes), **arrays)
        return [path]
    for kind in kinds:
        images, labels = _subset(ds, kind, limit)
        if fmt == "csv":
            path = out / f"{ds.name}-{kind}.csv"
            write_csv(path, images, labels)
        else:
            path = out / f"{ds.name}-{kind}"
            write_png_tree(path, images, labels, ds.classes)
        written.append(path)
    return written


def write_csv(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    flat = images.reshape(len(images), -1)
    header = "label," + ",".join(f"pixel{i}" for i in range(1, flat.shape[1] + 1))
    with atomic_open(path, "w") as fh:
        buf = io.StringIO()
        np.savetxt(buf, np.column_stack([labels, flat]), fmt="%d", delimiter=",", header=header, comments="")
        fh.write(buf.getvalue())


def read_csv(path: Path, side: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Read the ``label,pixel1..`` layout back into (n, side, side) uint8 images and uint8 labels."""
    try:
        with open(path, newline="") as fh:
            header = next(csv.reader(fh))
            if not header or header[0] != "label":
                raise DataError(f"{path}: first column must be 'label'")
            data = np.loadtxt(fh, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, ValueError, StopIteration) as exc:
        raise DataError(f"{path}: cannot read CSV: {exc}") from None
    if data.shape[1] != 1 + side * side or data.min(initial=0) < 0 or data.max(initial=0) > 255:
        raise DataError(f"{path}: expected 1 + {side * side} columns of values 0..255")
    return data[:, 1:].astype(np.uint8).reshape(-1, side, side), data[:, 0].astype(np.uint8)


def write_png_tree(root: Path, images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]) -> None:
    """``root/<class dir>/<index>.png``; the index is the image's position in the split."""
    from PIL import Image

    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        dirs = [tmp / class_dirname(i, name) for i, name in enumerate(classes)]
        for d in dirs:
            d.mkdir()
        for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
            Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8)).save(
                dirs[int(lab)] / f"{i:05d}.png", optimize=False
            )
        if root.exists():
            old = root.with_name(f".{root.name}.old-{os.getpid()}")
            os.replace(root, old)
            os.replace(tmp, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_png_tree(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a PNG tree back in index order: (n, 28, 28) uint8 images, uint8 labels."""
    from PIL import Image

    items = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        label = int(class_dir.name.split("-", 1)[0])
        for png in class_dir.glob("*.png"):
            items.append((int(png.stem), label, png))
    if not items:
        raise DataError(f"{root}: no PNG images in class folders")
    items.sort()
    images = []
    for _, _, png in items:
        with Image.open(png) as im:
            images.append(np.asarray(im.convert("L")))
    images = np.stack(images)
    labels = np.array([lab for _, lab, _ in items], dtype=np.uint8)
    return images, labels
