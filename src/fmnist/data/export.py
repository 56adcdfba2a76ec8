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
file is kept. An output that is (or contains) one of the input files is always refused.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from fmnist.data.loader import Dataset
from fmnist.data.sources import dataset_cache
from fmnist.errors import ConfigError, DataError, FmnistError
from fmnist.fsio import atomic_open, cleanup_on_signals, usual_mode, write_json

FORMATS = ("npz", "csv", "png", "parquet")
NPZ_KEYS = {"train": "train", "t10k": "test"}  # our split -> Keras' key suffix (x_train, ..., y_test)
HF_SPLITS = {"train": "train", "t10k": "test"}  # our split -> the Hugging Face split name
PARQUET_ROWS = 10_000  # images per Parquet row group: the PNGs of one group are all that is held
MANIFEST = ".fmnist-export.json"  # marks an export's own output
TOOL = "fmnist data export"
_PNG_NAME = re.compile(r"(\d+)\.png")


def class_dirname(index: int, name: str) -> str:
    """``3-dress``: index first (sorts right), then a file-system-safe slug of the class name."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return f"{index}-{slug}"


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
            _tree_plan(target, force)  # check every target before writing any
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


def _read_manifest(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("tool") == TOOL else {}


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _is_own_file(path: Path) -> bool:
    """``path`` is a file this export wrote and nobody changed since (same size and mtime)."""
    entry = _read_manifest(path.parent / MANIFEST).get("files", {}).get(path.name)
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
    data = _read_manifest(manifest) or {"tool": TOOL, "files": {}}
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


# --- PNG trees: the manifest inside the tree names its class folders and image count -------------------


def _own_names(manifest: dict) -> tuple[set[str], int]:
    """The class folders and the image count an earlier export recorded."""
    dirs = manifest.get("classes")
    count = manifest.get("images")
    if not isinstance(dirs, list) or not isinstance(count, int):
        return set(), 0
    return {d for d in dirs if isinstance(d, str) and "/" not in d and d not in ("", ".", "..")}, count


def _is_own_png(name: str, count: int) -> bool:
    match = _PNG_NAME.fullmatch(name)
    return bool(match) and int(match.group(1)) < count


def _foreign_entries(root: Path, manifest: dict) -> list[Path]:
    """Everything under ``root`` an earlier export (described by ``manifest``) did not write."""
    dirs, count = _own_names(manifest)
    foreign = []
    for entry in sorted(root.iterdir()):
        if entry.name == MANIFEST and manifest:
            continue
        if entry.name in dirs and entry.is_dir() and not entry.is_symlink():
            for item in sorted(entry.iterdir()):
                if not (_is_own_png(item.name, count) and item.is_file() and not item.is_symlink()):
                    foreign.append(item)
        else:
            foreign.append(entry)
    return foreign


def _tree_plan(root: Path, force: bool) -> str:
    """How to put a new tree at ``root``: "swap" (rename into place) or "merge" (move files in).

    Refuses a root that is not a folder, and one that holds files an earlier export did not write
    unless ``force``: a merge never deletes those files.
    """
    if not os.path.lexists(root):
        return "swap"
    if not root.is_dir():
        raise DataError(f"{root}: exists and is not a folder; not replaced (choose another --out)")
    manifest = _read_manifest(root / MANIFEST)
    if root.is_symlink():
        foreign = [root]
    else:
        foreign = _foreign_entries(root, manifest)
    if not foreign:
        return "swap"  # empty, or only the export's own files: replace it whole
    if manifest or force:
        return "merge"  # our folder with the user's extra files in it, or --force: keep those files
    shown = ", ".join(p.name for p in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
    raise DataError(
        f"{root}: exists and is not the output of an earlier `{TOOL}` (it holds {shown}); "
        "choose another --out, or pass --force to write into it (files the export did not write are kept)"
    )


def write_png_tree(
    root: Path,
    images: np.ndarray,
    labels: np.ndarray,
    classes: tuple[str, ...],
    *,
    force: bool = False,
    info: dict | None = None,
) -> None:
    """``root/<class dir>/<index>.png``; the index is the image's position in the split.

    Replaces ``root`` only when it is an earlier export's own output (or empty); see :func:`export`
    for ``force``. SIGTERM/SIGINT while writing remove the temporary folder.
    """
    plan = _tree_plan(root, force)
    root.parent.mkdir(parents=True, exist_ok=True)
    dirnames = [class_dirname(i, name) for i, name in enumerate(classes)]
    manifest = {"tool": TOOL, "format": "png", **(info or {}), "images": len(labels), "classes": dirnames}
    with cleanup_on_signals():
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
        try:
            os.chmod(tmp, usual_mode(directory=True))  # mkdtemp makes 0700
            dirs = [tmp / d for d in dirnames]
            for d in dirs:
                d.mkdir()
            for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
                Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8)).save(
                    dirs[int(lab)] / f"{i:05d}.png", optimize=False
                )
            write_json(tmp / MANIFEST, manifest)
            if plan == "swap":
                _swap_in(tmp, root)
            else:
                _merge_in(tmp, root, manifest)
        finally:
            _remove_tree(tmp)


def _swap_in(tmp: Path, root: Path) -> None:
    """Rename ``tmp`` to ``root``; an old own tree is moved aside first and deleted after."""
    if not os.path.lexists(root):
        os.replace(tmp, root)
        return
    old = root.with_name(f".{root.name}.old-{os.getpid()}")
    os.replace(root, old)
    try:
        os.replace(tmp, root)
    except BaseException:
        if not os.path.lexists(root):
            os.replace(old, root)  # put the old tree back
        raise
    _remove_tree(old)


def _remove_tree(path: Path) -> None:
    """rmtree that finishes even when a signal lands in the middle (cleanup_on_signals ignores a second)."""
    try:
        shutil.rmtree(path, ignore_errors=True)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise


def _merge_in(tmp: Path, root: Path, manifest: dict) -> None:
    """Move the new files into an existing ``root``, keeping every file an export did not write.

    While the files move, the manifest covers the old and the new names (so a rerun still sees its
    own output); stale images of an earlier export are removed; the final manifest goes last.
    """
    old_manifest = _read_manifest(root / MANIFEST)
    old_dirs, old_count = _own_names(old_manifest)
    new_dirs = set(manifest["classes"])
    for d in new_dirs:  # a file where a class folder goes cannot be merged: check before moving anything
        if os.path.lexists(root / d) and not (root / d).is_dir():
            raise DataError(f"{root / d}: exists and is not a folder; not replaced (choose another --out)")
    written = {(d, p.name) for d in new_dirs for p in (tmp / d).iterdir()}
    union = {
        **manifest,
        "complete": False,
        "classes": sorted(old_dirs | new_dirs),
        "images": max(old_count, manifest["images"]),
    }
    if old_manifest:
        write_json(root / MANIFEST, union)
    for d in sorted(new_dirs):
        (root / d).mkdir(exist_ok=True)
        for item in (tmp / d).iterdir():
            os.replace(item, root / d / item.name)
    for d in sorted(old_dirs):  # stale images of the earlier export (ours, so ours to remove)
        folder = root / d
        if not folder.is_dir() or folder.is_symlink():
            continue
        for item in folder.iterdir():
            if (d, item.name) not in written and _is_own_png(item.name, old_count) and item.is_file():
                item.unlink()
        if d not in new_dirs:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty
    os.replace(tmp / MANIFEST, root / MANIFEST)


def read_png_tree(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a PNG tree back in index order: (n, 28, 28) uint8 images, uint8 labels."""
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
