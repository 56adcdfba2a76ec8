"""A folder of labelled real photos (the format of ../shared/photos/labels.csv), for validation only.

``labels.csv`` has a ``file`` column (a path relative to the folder) and a ``fashion_mnist_class``
column whose text names the right answer: one class ("Coat"), a set the source does not tell apart
("footwear (Sandal, Sneaker or Ankle boot)": any of the three is right), or "none of the ten" (a hat,
shorts, a skirt: the model should say it is not sure). Optional ``source_label`` groups the figures.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from pathlib import Path

from fmnist.errors import FmnistError

LABELS_FILE = "labels.csv"
NONE_OF_THE_TEN = "none of the ten"
MAX_LABELS_BYTES = 16 << 20


@dataclasses.dataclass(frozen=True)
class LabelledPhoto:
    path: Path
    answers: frozenset[int]  # class indices that count as right; empty: none of the ten
    group: str  # the source's label (or the answer text) to report figures by

    @property
    def in_class(self) -> bool:
        return bool(self.answers)


def parse_answer(text: str, classes: tuple[str, ...] | list[str], where: str) -> frozenset[int]:
    """The class indices a label text names (empty for "none of the ten"); unknown text is one line."""
    if text.strip().lower().startswith(NONE_OF_THE_TEN):
        return frozenset()
    # Longest names first, so "T-shirt/top" is not also read as a shorter name inside it.
    found, rest = set(), text
    for i, name in sorted(enumerate(classes), key=lambda item: -len(item[1])):
        if name in rest:
            found.add(i)
            rest = rest.replace(name, "")
    if not found:
        raise FmnistError(
            f"{where}: {text!r} names none of the classes ({', '.join(classes)}) nor {NONE_OF_THE_TEN!r}"
        )
    return frozenset(found)


def read_photo_labels(
    folder: str | os.PathLike, classes: tuple[str, ...] | list[str], labels: str | os.PathLike | None = None
) -> list[LabelledPhoto]:
    """The photos listed in ``labels`` (default FOLDER/labels.csv), each checked to exist inside FOLDER."""
    root = Path(folder)
    if not root.is_dir():
        raise FmnistError(f"{root}: no such folder of photos")
    csv_path = Path(labels) if labels is not None else root / LABELS_FILE
    if not csv_path.is_file():
        raise FmnistError(f"{csv_path}: no labels file (columns file, fashion_mnist_class)")
    if csv_path.stat().st_size > MAX_LABELS_BYTES:
        raise FmnistError(f"{csv_path}: too large for a labels file (over {MAX_LABELS_BYTES >> 20} MiB)")
    try:
        rows = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise FmnistError(f"{csv_path}: not a readable CSV file ({exc})") from None
    if not rows or not {"file", "fashion_mnist_class"} <= set(rows[0]):
        raise FmnistError(f"{csv_path}: needs the columns file and fashion_mnist_class")
    resolved_root = root.resolve()
    photos = []
    for line, row in enumerate(rows, start=2):
        where = f"{csv_path}:{line}"
        name = (row.get("file") or "").strip()
        path = (root / name).resolve()
        if not name or not path.is_relative_to(resolved_root):
            raise FmnistError(f"{where}: file {name!r} is not a path inside {root}")
        if not path.is_file():
            raise FmnistError(f"{where}: {name}: no such photo")
        text = row.get("fashion_mnist_class") or ""
        group = (row.get("source_label") or "").strip() or text.strip()
        photos.append(LabelledPhoto(root / name, parse_answer(text, classes, where), group))
    return photos
