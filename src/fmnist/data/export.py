"""Export a data set as NPZ, CSV (``label,pixel1..pixel784``), PNG folders or Parquet; read them back.

The NPZ uses Keras' key names (``x_train, y_train, x_test, y_test``, plus ``classes``), so
``np.load`` gives what ``keras.datasets.fashion_mnist.load_data()`` returns. The Parquet files
(``<name>-train.parquet``, ``<name>-test.parquet``) have the Hugging Face Hub's schema: ``image`` a
struct ``{bytes: PNG, path: null}`` and ``label`` an int64, with the ``datasets`` features in the
schema metadata, so ``datasets.load_dataset("parquet", ...)`` reads ``label`` back as a ClassLabel
with the class names. Parquet needs pyarrow (``pip install "fmnist[hf]"``), imported only here.

Every export is atomic: a file goes through a temporary name; a PNG tree is written into a
temporary folder and renamed into place, so an interrupted export never looks complete. SIGTERM
and SIGINT during an export remove the temporary files before the command exits.

An export never destroys a user's files. It marks what it writes (a ``.fmnist-export.json``
manifest inside each PNG tree; one in the output folder for NPZ/CSV files) and replaces only its
own earlier output. Anything else in the way is refused with one line; ``force=True`` (the CLI's
``--force``) writes anyway, but even then it only writes its own file names (``fashion.npz``,
``<class dir>/<index>.png``, ...) and removes only files an earlier export recorded: every other
file is kept. An output that is (or contains) one of the input files is always refused. The PNG trees and
the manifest live in :mod:`fmnist.data.export_png`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from fmnist.data.export_png import MANIFEST, TOOL, read_manifest, tree_plan, write_png_tree
from fmnist.data.loader import Dataset
from fmnist.data.sources import dataset_cache
from fmnist.errors import ConfigError, DataError, FmnistError
from fmnist.fsio import atomic_open, cleanup_on_signals, write_json

FORMATS = ("npz", "csv", "png", "parquet")
NPZ_KEYS = {"train": "train", "t10k": "test"}  # our split -> Keras' key suffix (x_train, ..., y_test)
HF_SPLITS = {"train": "train", "t10k": "test"}  # our split -> the Hugging Face split name
PARQUET_ROWS = 10_000  # images per Parquet row group: the PNGs of one group are all that is held


def _subset(ds: Dataset, kind: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    split = ds.split(kind)
    n = len(split) if limit is None else min(limit, len(split))
    return np.asarray(split.images[:n]), np.asarray(split.labels[:n])


def input_paths(ds: Dataset) -> list[Path]:
    """What reading ``ds`` touches: its data files and its array cache, resolved (never an output)."""
    paths = list(ds.files.paths.values()) + [dataset_cache(ds.spec)]
    out = []
    for p in paths:
        with contextlib.suppress(OSError, RuntimeError):
            out.append(Path(p).resolve())
    return out


def _refuse_inputs(target: Path, inputs: Iterable[Path]) -> None:
    """An output that is an input, or a folder holding one, would destroy the data being read."""
    try:
        resolved = target.resolve()
    except (OSError, RuntimeError):
        return
    for inp in inputs:
        if resolved == inp or resolved in inp.parents:
            raise DataError(f"{target}: is (or holds) an input of this export ({inp}); choose another --out")


def export(
    ds: Dataset,
    out: Path,
    fmt: str,
    kinds: tuple[str, ...] = ("train", "t10k"),
    limit: int | None = None,
    *,
    force: bool = False,
) -> list[Path]:
    """Write ``ds`` under ``out``; returns the files or folders written.

    Refuses (DataError, one line) to replace anything that is not this function's own earlier
    output unless ``force``; even with ``force`` only the export's own file names are written and
    no other file is deleted. An output that is (or holds) an input is refused, ``force`` or not.
    """
    if fmt not in FORMATS:
        raise DataError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive number of images, got {limit!r}")
    for kind in kinds:
        ds.split(kind)  # an unknown split is a one-line error before anything is written
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder (--out names the folder to write into)")
    if fmt == "parquet":
        _pyarrow()  # missing: one line before anything is written
    inputs = input_paths(ds)
    if fmt == "npz":
        targets = [out / f"{ds.name}.npz"]
    elif fmt == "csv":
        targets = [out / f"{ds.name}-{kind}.csv" for kind in kinds]
    elif fmt == "parquet":
        targets = [out / f"{ds.name}-{HF_SPLITS[kind]}.parquet" for kind in kinds]
    else:
        targets = [out / f"{ds.name}-{kind}" for kind in kinds]
    for target in targets:
        _refuse_inputs(target, inputs)
        if fmt == "png":
            tree_plan(target, force)  # check every target before writing any
        else:
            _check_file_target(target, force)
    try:
        return _write(ds, out, fmt, kinds, limit, force, targets)
    except OSError as exc:  # a full disk, a read-only folder: the temporaries are already gone
        where = exc.filename or out
        raise DataError(f"{where}: cannot write the {fmt} export: {exc.strerror or exc}") from None


def _write(
    ds: Dataset,
    out: Path,
    fmt: str,
    kinds: tuple[str, ...],
    limit: int | None,
    force: bool,
    targets: list[Path],
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)  # new folders: 0777 & ~umask
    with cleanup_on_signals():
        if fmt == "npz":
            arrays = {}
            for kind in kinds:
                images, labels = _subset(ds, kind, limit)
                arrays[f"x_{NPZ_KEYS[kind]}"], arrays[f"y_{NPZ_KEYS[kind]}"] = images, labels
            with atomic_open(targets[0], "wb") as fh:
                np.savez_compressed(fh, classes=np.array(ds.classes), **arrays)
            _record_file(targets[0])
            return targets
        for kind, path in zip(kinds, targets, strict=True):
            images, labels = _subset(ds, kind, limit)
            if fmt == "csv":
                write_csv(path, images, labels)
                _record_file(path)
            elif fmt == "parquet":
                write_parquet(path, images, labels, ds.classes)
                _record_file(path)
            else:
                write_png_tree(
                    path, images, labels, ds.classes, force=force, info={"dataset": ds.name, "split": kind}
                )
    return targets


# --- NPZ / CSV files: a manifest in the output folder records the files this export wrote ----------


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _is_own_file(path: Path) -> bool:
    """``path`` is a file this export wrote and nobody changed since (same size and mtime)."""
    entry = read_manifest(path.parent / MANIFEST).get("files", {}).get(path.name)
    try:
        return isinstance(entry, list) and entry == _stamp(path)
    except OSError:
        return False


def _check_file_target(path: Path, force: bool) -> None:
    if not os.path.lexists(path):
        return
    if path.is_dir() or not path.is_file():
        raise DataError(f"{path}: exists and is not a file; not replaced (choose another --out)")
    if not force and not _is_own_file(path):
        raise DataError(
            f"{path}: exists and was not written by an earlier `{TOOL}`; not replaced "
            "(choose another --out, or pass --force to replace it)"
        )


def _record_file(path: Path) -> None:
    """Add ``path`` to its folder's manifest; a manifest that cannot be written only costs a --force later."""
    manifest = path.parent / MANIFEST
    data = read_manifest(manifest) or {"tool": TOOL, "files": {}}
    files = data.get("files") if isinstance(data.get("files"), dict) else {}
    files = {name: stamp for name, stamp in files.items() if (path.parent / name).is_file()}
    files[path.name] = _stamp(path)
    data["files"] = files
    with contextlib.suppress(OSError):
        write_json(manifest, data)


# --- CSV ---------------------------------------------------------------------------------------------


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


# --- Parquet (the Hugging Face Hub's layout) ------------------------------------------------------------


def _pyarrow():
    """``pyarrow`` and ``pyarrow.parquet``, or a one-line error saying how to install them."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise FmnistError('the parquet export needs pyarrow: pip install "fmnist[hf]"') from None
    return pyarrow, pyarrow.parquet


def hf_features(classes: Iterable[str]) -> dict:
    """The ``datasets`` features JSON (``Image`` + ``ClassLabel``) stored under the ``huggingface`` key."""
    return {
        "info": {
            "features": {
                "image": {"_type": "Image"},
                "label": {"names": list(classes), "_type": "ClassLabel"},
            }
        }
    }


def png_bytes(image: np.ndarray) -> bytes:
    """One grayscale image as PNG file bytes (what ``datasets.Image()`` stores for an array)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def write_parquet(
    path: Path, images: np.ndarray, labels: np.ndarray, classes: Iterable[str], *, rows: int = PARQUET_ROWS
) -> None:
    """``image`` {bytes: PNG, path: null}, ``label`` int64, in row groups of ``rows`` images, atomically."""
    pa, pq = _pyarrow()
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema(
        [("image", image_type), ("label", pa.int64())],
        metadata={"huggingface": json.dumps(hf_features(classes))},
    )
    with atomic_open(path, "wb") as fh, pq.ParquetWriter(fh, schema) as writer:
        for start in range(0, max(len(labels), 1), rows):
            chunk = images[start : start + rows]
            encoded = [{"bytes": png_bytes(img), "path": None} for img in chunk]
            table = pa.table(
                {
                    "image": pa.array(encoded, type=image_type),
                    "label": pa.array(np.asarray(labels[start : start + rows], dtype=np.int64)),
                },
                schema=schema,
            )
            writer.write_table(table, row_group_size=rows)


def read_parquet(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a Parquet export back: (n, h, w) uint8 images decoded from the PNGs, uint8 labels."""
    _, pq = _pyarrow()
    try:
        table = pq.read_table(path, columns=["image", "label"])
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: cannot read Parquet: {exc}") from None
    images = []
    for cell in table.column("image").to_pylist():
        with Image.open(io.BytesIO(cell["bytes"])) as im:
            images.append(np.asarray(im.convert("L")))
    labels = np.asarray(table.column("label").to_numpy(), dtype=np.uint8)
    return (np.stack(images) if images else np.zeros((0, 28, 28), np.uint8)), labels
