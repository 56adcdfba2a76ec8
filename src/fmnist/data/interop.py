"""The entry points people already know, over the project's verified files.

- ``FashionMNIST`` / ``MNIST``: torchvision's dataset classes (same signature, items, attributes), so a
  tutorial's ``DataLoader`` code runs unchanged without installing torchvision. They live in
  :mod:`fmnist.data.interop_torch` and are imported on first use, so this module never imports torch.
- ``load_data``: Keras' ``fashion_mnist.load_data()`` shapes and dtypes.
- ``to_dataframe``: Kaggle's CSV layout (``label, pixel1..pixel784``) as a pandas DataFrame.

Whatever the entry point, the files are found and verified exactly as ``fmnist`` does everywhere
(:func:`fmnist.data.sources.locate`, :func:`fmnist.data.loader.load_dataset`): a damaged file is a
one-line :class:`~fmnist.errors.DataError`, never silently used, and nothing is written into a
folder the user named (the decompressed-array cache lives in the fmnist cache).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmnist.data.loader import Dataset, load_dataset
from fmnist.data.registry import DatasetSpec, get_spec
from fmnist.errors import DataError, FmnistError

if TYPE_CHECKING:
    import pandas as pd

    from fmnist.data.interop_torch import MNIST, FashionMNIST  # noqa: F401 (re-exported lazily)

# torchvision's folder name under ``root`` for each data set: ROOT/<name>/raw/ holds the IDX files.
TORCHVISION_FOLDERS = {"fashion": "FashionMNIST", "mnist": "MNIST"}
_SPLIT_ALIASES = {
    "train": "train",
    "t10k": "t10k",
    "test": "t10k",
}  # Kaggle says "test", the IDX files "t10k"
_TORCH_EXPORTS = ("FashionMNIST", "MNIST")


def __getattr__(name: str) -> Any:
    """``FashionMNIST`` / ``MNIST`` import torch: only when asked for (PEP 562)."""
    if name in _TORCH_EXPORTS:
        from fmnist.data import interop_torch

        return getattr(interop_torch, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _holds_files(folder: Path, spec: DatasetSpec) -> list[str]:
    """The data set's files present in ``folder`` (published .gz or decompressed, as ``locate`` accepts)."""
    return [
        res.filename
        for res in spec.resources.values()
        if (folder / res.filename).is_file() or (folder / res.stem).is_file()
    ]


def find_root_folder(root: str | os.PathLike, spec: DatasetSpec) -> Path | None:
    """The folder under a torchvision-style ``root`` that holds ``spec``'s files, or None.

    torchvision's layout ``ROOT/FashionMNIST/raw/`` first, then ``ROOT`` itself (the README's
    ``data/fashion``). A folder holding only some of the four files is an error rather than a reason
    to fall back to another copy: the user pointed at it, so a silent substitute would mislead.
    """
    base = Path(root).expanduser()
    for folder in (base / TORCHVISION_FOLDERS.get(spec.name, spec.title) / "raw", base):
        present = _holds_files(folder, spec)
        if not present:
            continue
        if len(present) < len(spec.resources):
            missing = [r.filename for r in spec.resources.values() if r.filename not in present]
            raise DataError(
                f"{folder}: holds only {len(present)} of the 4 {spec.title} files (missing {', '.join(missing)})"
            )
        return folder
    return None


def load_for_root(
    name: str, root: str | os.PathLike | None, *, download: bool = False, quiet: bool = True
) -> Dataset:
    """Load data set ``name`` for a torchvision-style ``root``: its files if it holds them, else the
    project's usual search (``$FMNIST_DATA_DIR``, cache, system copy, and a download when allowed)."""
    spec = get_spec(name)
    folder = find_root_folder(root, spec) if root is not None else None
    if folder is not None:
        ds = load_dataset(name, folder, download=False, quiet=quiet)
        return replace(ds, files=replace(ds.files, origin="root"))  # not "--data-dir": no CLI here
    try:
        return load_dataset(name, None, download=download, quiet=quiet)
    except DataError as exc:
        if root is None:
            raise
        tv = Path(root) / TORCHVISION_FOLDERS.get(spec.name, spec.title) / "raw"
        hint = "" if download else "; download=True fetches them into the fmnist cache"
        raise DataError(f"no {spec.title} files in {tv} or {root}, nor elsewhere ({exc}){hint}") from None


def load_data(
    dataset: str = "fashion", data_dir: str | os.PathLike | None = None
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Keras' ``fashion_mnist.load_data()``: ``((x_train, y_train), (x_test, y_test))``, uint8 arrays
    (60000, 28, 28), (60000,), (10000, 28, 28), (10000,), so Keras code can switch with one import.

    ``dataset`` is ``"fashion"`` or ``"mnist"``; ``data_dir`` a folder holding the four files (else the
    usual search, downloading into the fmnist cache when nothing local verifies, as Keras does). The
    arrays are in-memory copies: writable, unlike the cache's memory maps.
    """
    ds = load_dataset(dataset, data_dir, download=True, quiet=False)
    return (
        (np.array(ds.train.images, dtype=np.uint8), np.array(ds.train.labels, dtype=np.uint8)),
        (np.array(ds.test.images, dtype=np.uint8), np.array(ds.test.labels, dtype=np.uint8)),
    )


def to_dataframe(
    split: str = "train", dataset: str = "fashion", data_dir: str | os.PathLike | None = None
) -> pd.DataFrame:
    """One split in Kaggle's CSV layout (``fashion-mnist_train.csv``): columns ``label, pixel1..pixel784``,
    one row per image in the IDX file's order, so notebooks written for the Kaggle files run unchanged.

    ``split`` is ``"train"`` or ``"t10k"`` (``"test"``, Kaggle's name, too). Every column is uint8.
    """
    try:
        import pandas as pd
    except ImportError:
        raise FmnistError("to_dataframe needs pandas: pip install pandas") from None
    kind = _SPLIT_ALIASES.get(split)
    if kind is None:
        raise DataError(f"unknown split {split!r}; known: train, t10k (or test)")
    part = load_dataset(dataset, data_dir, download=True, quiet=False).split(kind)
    pixels = np.asarray(part.images).reshape(len(part), -1)
    table = np.empty((len(part), 1 + pixels.shape[1]), dtype=np.uint8)  # one block: no per-column copies
    table[:, 0] = part.labels
    table[:, 1:] = pixels
    columns = ["label", *(f"pixel{i}" for i in range(1, pixels.shape[1] + 1))]
    return pd.DataFrame(table, columns=columns, copy=False)
