"""PNG folder trees for ``fmnist data export --format png``: ``<class dir>/<index>.png``, written into a
temporary folder and renamed (or, over an earlier export, merged) into place; read back in index order.

Also the manifest that marks an export's own output (:data:`MANIFEST`), which the NPZ/CSV files of
:mod:`fmnist.data.export` use too: a tree or folder without it, or with files it does not list, is a
user's and is never overwritten or removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from fmnist.errors import DataError
from fmnist.fsio import cleanup_on_signals, usual_mode, write_json

MANIFEST = ".fmnist-export.json"  # marks an export's own output
TOOL = "fmnist data export"
_PNG_NAME = re.compile(r"(\d+)\.png")


def class_dirname(index: int, name: str) -> str:
    """``3-dress``: index first (sorts right), then a file-system-safe slug of the class name."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return f"{index}-{slug}"


def read_manifest(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("tool") == TOOL else {}


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


def tree_plan(root: Path, force: bool) -> str:
    """How to put a new tree at ``root``: "swap" (rename into place) or "merge" (move files in).

    Refuses a root that is not a folder, and one that holds files an earlier export did not write
    unless ``force``: a merge never deletes those files.
    """
    if not os.path.lexists(root):
        return "swap"
    if not root.is_dir():
        raise DataError(f"{root}: exists and is not a folder; not replaced (choose another --out)")
    manifest = read_manifest(root / MANIFEST)
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
    plan = tree_plan(root, force)
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
    old_manifest = read_manifest(root / MANIFEST)
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
