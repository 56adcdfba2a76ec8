"""``fmnist data``: fetch, verify, describe, export the data, and draw the sprite."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fmnist.cli import HelpFormatter, add_group


def add_source_args(parser: argparse.ArgumentParser) -> None:
    """``--dataset`` and ``--data-dir``: shared by every command that reads the data."""
    parser.add_argument("--dataset", default="fashion", help="data set name: fashion or mnist")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder holding the four IDX files (.gz or raw); default: $FMNIST_DATA_DIR, the cache, "
        "the system copy (skipped when $FMNIST_NO_SYSTEM_DATA=1), then download",
    )


def register(sub) -> None:
    dsub = add_group(
        sub,
        "data",
        help="get, verify, describe and export the data",
        description="Get the data files, verify them, summarise, export, draw the sprite.",
        example="fmnist data fetch && fmnist data info",
    )

    fetch = dsub.add_parser(
        "fetch",
        help="find or download the four files and verify them",
        description="Find verified files locally (--data-dir, cache, system copy) or download them.\n\n"
        "Example:\n  fmnist data fetch --mirror http://127.0.0.1:8000/",
        formatter_class=HelpFormatter,
    )
    add_source_args(fetch)
    fetch.add_argument(
        "--mirror",
        action="append",
        default=None,
        help="base URL to download from (repeatable); replaces the built-in mirrors",
    )
    fetch.add_argument("--retries", type=int, default=3, help="attempts per mirror")
    fetch.add_argument("--timeout", type=float, default=30.0, help="seconds per connection")
    fetch.set_defaults(func=cmd_fetch)

    verify = dsub.add_parser(
        "verify",
        help="check every file's checksum and header",
        description="Verify the files against the published MD5s and the decompressed-content MD5s.\n\n"
        "Example:\n  fmnist data verify --data-dir /usr/share/datasets/fashion-mnist",
        formatter_class=HelpFormatter,
    )
    add_source_args(verify)
    verify.set_defaults(func=cmd_verify)

    info = dsub.add_parser(
        "info",
        help="counts per split and class, checksums, where the files came from",
        description="Summarise the data set.\n\nExample:\n  fmnist data info --json",
        formatter_class=HelpFormatter,
    )
    add_source_args(info)
    info.add_argument("--json", action="store_true", help="print the summary as JSON")
    info.set_defaults(func=cmd_info)

    exp = dsub.add_parser(
        "export",
        help="write the data as NPZ, CSV or PNG folders",
        description="Export the data. CSV uses the common label,pixel1..pixel784 layout; PNG writes one "
        "folder per split and class.\n\nExample:\n  fmnist data export --format csv --out exported/",
        formatter_class=HelpFormatter,
    )
    add_source_args(exp)
    exp.add_argument("--format", choices=("npz", "csv", "png"), default="npz")
    exp.add_argument("--out", type=Path, default=Path("exported"), help="output folder")
    exp.add_argument("--split", choices=("train", "t10k", "both"), default="both")
    exp.add_argument("--limit", type=int, default=None, help="only the first N images of each split")
    exp.set_defaults(func=cmd_export)

    sprite = dsub.add_parser(
        "sprite",
        help="draw the README's sprite (each class takes three rows)",
        description="Draw a grid of random samples, three rows per class.\n\nExample:\n  fmnist data sprite --out sprite.png",
        formatter_class=HelpFormatter,
    )
    add_source_args(sprite)
    sprite.add_argument("--out", type=Path, default=Path("sprite.png"))
    sprite.add_argument("--columns", type=int, default=30)
    sprite.add_argument("--split", choices=("train", "t10k"), default="train")
    sprite.add_argument("--seed", type=int, default=0)
    sprite.add_argument("--invert", action="store_true", help="dark articles on white")
    sprite.set_defaults(func=cmd_sprite)


def cmd_fetch(args) -> int:
    from fmnist.data.sources import locate
    from fmnist.errors import ConfigError

    if args.retries < 1 or args.timeout <= 0:
        raise ConfigError("--retries must be at least 1 and --timeout positive")
    files = locate(
        args.dataset, args.data_dir, mirrors=args.mirror, retries=args.retries, timeout=args.timeout
    )
    print(f"{files.spec.title}: 4 files verified, from {files.describe()}")
    return 0


def cmd_verify(args) -> int:
    from fmnist.data.sources import locate

    files = locate(args.dataset, args.data_dir, download_missing=False)
    for key, path in files.paths.items():
        print(f"ok  {path}  ({files.verified[key]})")
    print(f"{files.spec.title}: all 4 files verified, from {files.describe()}")
    return 0


def summary(ds) -> dict:
    """The data summary: what ``fmnist data info`` prints and ``make run`` shows."""
    import numpy as np

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


def cmd_info(args) -> int:
    from fmnist.data.loader import load_dataset

    info = summary(load_dataset(args.dataset, args.data_dir, quiet=False))
    print(json.dumps(info, indent=2) if args.json else format_summary(info))
    return 0


def cmd_export(args) -> int:
    from fmnist.data.export import export
    from fmnist.data.loader import load_dataset
    from fmnist.errors import ConfigError

    if args.limit is not None and args.limit < 1:
        raise ConfigError("--limit must be a positive number of images")
    ds = load_dataset(args.dataset, args.data_dir, quiet=False)
    kinds = ("train", "t10k") if args.split == "both" else (args.split,)
    for path in export(ds, args.out, args.format, kinds, args.limit):
        print(path)
    return 0


def cmd_sprite(args) -> int:
    import numpy as np

    from fmnist.data.loader import load_dataset
    from fmnist.errors import ConfigError
    from fmnist.viz.sprite import make_sprite, save_sprite

    if args.columns < 1:
        raise ConfigError("--columns must be positive")
    ds = load_dataset(args.dataset, args.data_dir, quiet=False)
    split = ds.split(args.split)
    canvas = make_sprite(
        np.asarray(split.images), np.asarray(split.labels), len(ds.classes), 3, args.columns, args.seed
    )
    print(save_sprite(args.out, canvas, invert=args.invert))
    return 0
