"""What a data set holds: counts per split and class, checksums, where the files came from.

Printed by ``fmnist data info`` and at the start of ``fmnist run``.
"""

from __future__ import annotations

import numpy as np

from fmnist.data.loader import Dataset


def summary(ds: Dataset) -> dict:
    """The data summary as plain JSON-ready values (``fmnist data info --json``)."""
    out = {
        "dataset": ds.spec.title,
        "source": ds.files.origin,
        "directory": str(ds.files.directory),
        "fingerprint": ds.fingerprint,
        "files": {
            k: {"path": str(p), "verified": ds.files.verified.get(k)} for k, p in ds.files.paths.items()
        },
        "splits": {},
    }
    for kind in ("train", "t10k"):
        split = ds.split(kind)
        counts = np.bincount(np.asarray(split.labels), minlength=len(ds.classes))
        out["splits"][kind] = {
            "images": len(split),
            "shape": list(split.images.shape[1:]),
            "per_class": {name: int(c) for name, c in zip(ds.classes, counts, strict=True)},
        }
    out["total_images"] = sum(s["images"] for s in out["splits"].values())
    return out


def format_summary(info: dict) -> str:
    """:func:`summary` as a few lines of text: the files, then a table of images per class and split."""
    lines = [
        f"{info['dataset']}: {info['total_images']:,} images, verified "
        f"(fingerprint {info['fingerprint']}), from {info['source']} ({info['directory']})",
    ]
    for key, f in info["files"].items():
        lines.append(f"  {key:<13} {f['verified']}  {f['path']}")
    classes = list(info["splits"]["train"]["per_class"])
    width = max(len(c) for c in classes)
    lines.append(f"  {'class':<{width}}  {'train':>7}  {'t10k':>7}")
    for c in classes:
        tr = info["splits"]["train"]["per_class"][c]
        te = info["splits"]["t10k"]["per_class"][c]
        lines.append(f"  {c:<{width}}  {tr:>7,}  {te:>7,}")
    tr_n, te_n = info["splits"]["train"]["images"], info["splits"]["t10k"]["images"]
    lines.append(f"  {'total':<{width}}  {tr_n:>7,}  {te_n:>7,}")
    return "\n".join(lines)
