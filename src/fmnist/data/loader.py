"""Load verified IDX files into numpy arrays.

``load_mnist`` is a drop-in for the Fashion-MNIST README's ``utils/mnist_reader.load_mnist``.
``load_dataset`` is the richer loader: (n, 28, 28) arrays, class names, where the files came
from, a data fingerprint to print beside every accuracy, and a decompressed ``.npy`` cache so a
second load is a memory map rather than a gunzip.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist.data.idx import read_idx
from fmnist.data.registry import SPLITS, DatasetSpec
from fmnist.data.sources import DataFiles, dataset_cache, locate
from fmnist.errors import DataError
from fmnist.fsio import atomic_open


def _check_pair(images: np.ndarray, labels: np.ndarray, images_name: str, labels_name: str) -> None:
    if labels.ndim != 1:
        raise DataError(f"{labels_name}: labels must be 1-D, found shape {labels.shape}")
    if images.ndim != 3:
        raise DataError(f"{images_name}: images must be 3-D (n, rows, cols), found shape {images.shape}")
    if len(images) != len(labels):
        raise DataError(f"{images_name}: {len(images)} images but {labels_name} holds {len(labels)} labels")


def load_mnist(path: str | os.PathLike, kind: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Exactly the README reader: ``(images uint8 (n, 784), labels uint8 (n,))`` from ``path``.

    Unlike the README reader it checks the headers and raises :class:`fmnist.errors.DataError`
    naming the file on any problem instead of returning garbage.

    >>> X_train, y_train = load_mnist('data/fashion', kind='train')  # doctest: +SKIP
    """
    base = Path(path)
    if not base.is_dir():
        raise DataError(f"{base}: data folder does not exist")
    labels_path = base / f"{kind}-labels-idx1-ubyte.gz"
    images_path = base / f"{kind}-images-idx3-ubyte.gz"
    labels = read_idx(labels_path)
    images = read_idx(images_path)
    _check_pair(images, labels, str(images_path), str(labels_path))
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise DataError(f"{images_path}: expected unsigned-byte IDX files")
    return images.reshape(len(labels), -1), labels


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (n, 28, 28) uint8, article light on black
    labels: np.ndarray  # (n,) uint8 class indices

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Dataset:
    """One loaded data set: both splits, class names, provenance."""

    spec: DatasetSpec
    train: Split
    test: Split
    files: DataFiles
    fingerprint: str  # short hash of the four files' content checksums

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def classes(self) -> tuple[str, ...]:
        return self.spec.classes

    def split(self, kind: str) -> Split:
        if kind not in SPLITS:
            raise DataError(f"unknown split {kind!r}; known: {', '.join(SPLITS)}")
        return self.train if kind == "train" else self.test


def _content_key(files: DataFiles, key: str) -> str:
    """Identity of a verified file's content: its content MD5 if published, else its .gz MD5."""
    res = files.spec.resources[key]
    return res.content_md5 or res.gz_md5


def fingerprint(files: DataFiles) -> str:
    joined = "".join(_content_key(files, k) for k in sorted(files.spec.resources))
    return hashlib.sha256(joined.encode()).hexdigest()[:12]


_STALE_TEMP_AGE = 3600.0  # seconds: a temporary cache file older than this was left by a dead process
_cache_note_given = False


def _cache_note(directory: Path, exc: OSError) -> None:
    """Say once per process that the array cache is not being written, and why."""
    global _cache_note_given
    if not _cache_note_given:
        _cache_note_given = True
        why = exc.strerror or str(exc) or type(exc).__name__
        print(
            f"note: cannot write the array cache in {directory} ({why}); reading without it", file=sys.stderr
        )


def _sweep_stale_temps(directory: Path) -> None:
    """Remove temporary files that a killed process (or an older release) left in the cache folder.

    Both ``.NAME.PID.tmp.npy`` (before fsio.atomic_open was used here) and atomic_open's
    ``.NAME.XXXX.tmp``; only old ones, so a concurrent writer's file is left alone.
    """
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    now = time.time()
    for entry in entries:
        name = entry.name
        if not (name.startswith(".") and (name.endswith(".tmp.npy") or name.endswith(".tmp"))):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and now - entry.stat().st_mtime > _STALE_TEMP_AGE:
                os.unlink(entry.path)
        except OSError:
            pass


def _cached_array(files: DataFiles, key: str) -> np.ndarray:
    """A memory map of the decompressed array, written once (atomically) next to the raw files' cache.

    The cache is only a speed-up: when it cannot be written (a full disk, a read-only or missing
    folder) the array read from the IDX file is returned, with a one-line note, and no temporary
    file is left behind (fsio.atomic_open removes it on every error path).
    """
    cache = dataset_cache(files.spec) / "arrays" / f"{key}-{_content_key(files, key)[:12]}.npy"
    try:
        if cache.is_file():
            return np.load(cache, mmap_mode="r")
    except (OSError, ValueError):
        pass  # a damaged cache file is rebuilt below
    array = read_idx(files.paths[key])
    try:
        _sweep_stale_temps(cache.parent)
        with atomic_open(cache, "wb") as fh:
            np.save(fh, array)
    except OSError as exc:
        _cache_note(cache.parent, exc)
        return array  # still correct, just not memory-mapped next time
    try:
        return np.load(cache, mmap_mode="r")
    except (OSError, ValueError):
        return array


def load_dataset(
    name: str = "fashion",
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    quiet: bool = True,
) -> Dataset:
    """Locate, verify and load data set ``name`` (``fashion`` or ``mnist``).

    >>> ds = load_dataset("fashion")  # doctest: +SKIP
    >>> ds.train.images.shape, ds.classes[0]  # doctest: +SKIP
    ((60000, 28, 28), 'T-shirt/top')
    """
    files = locate(name, data_dir, download_missing=download, quiet=quiet)
    splits = {}
    for kind in SPLITS:
        images = _cached_array(files, f"{kind}-images")
        labels = _cached_array(files, f"{kind}-labels")
        _check_pair(images, labels, str(files.paths[f"{kind}-images"]), str(files.paths[f"{kind}-labels"]))
        if labels.size and int(labels.max()) >= len(files.spec.classes):
            raise DataError(
                f"{files.paths[f'{kind}-labels']}: label {int(labels.max())} out of range "
                f"for {len(files.spec.classes)} classes"
            )
        splits[kind] = Split(images, labels)
    return Dataset(files.spec, splits["train"], splits["t10k"], files, fingerprint(files))


def stratified_split(
    labels: np.ndarray, val_size: int | float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train_idx, val_idx)``: a seeded validation split with every class in proportion.

    ``val_size`` is a count (int) or a fraction of ``labels`` (float in (0, 1)). Both index arrays
    are sorted, so the split does not depend on the order of the classes.
    """
    labels = np.asarray(labels)
    n = len(labels)
    n_val = int(round(val_size * n)) if isinstance(val_size, float) else int(val_size)
    if not 0 <= n_val < n:
        raise DataError(f"validation size {val_size} does not fit {n} training images")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    # Largest-remainder allocation so the per-class counts add up to exactly n_val.
    exact = counts * (n_val / n)
    take = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - take))[: n_val - take.sum()]:
        take[i] += 1
    val = []
    for cls, k in zip(classes, take, strict=True):
        idx = np.flatnonzero(labels == cls)
        val.append(rng.choice(idx, size=k, replace=False))
    val_idx = np.sort(np.concatenate(val)) if val else np.empty(0, dtype=int)
    mask = np.ones(n, dtype=bool)
    mask[val_idx] = False
    return np.flatnonzero(mask), val_idx
