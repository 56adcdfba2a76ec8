"""``fmnist data``: fetch, verify, describe, export the data, and draw the sprite."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fmnist.cli import add_command, add_data_dir_arg, add_group
from fmnist.data.download import check_mirrors, check_settings
from fmnist.data.loader import load_dataset
from fmnist.data.registry import get_spec
from fmnist.data.sources import locate
from fmnist.data.summary import format_summary, summary
from fmnist.errors import ConfigError, DataError

# The export and the sprite (Pillow) are imported inside their commands: `fmnist --help` stays light.


def add_source_args(parser: argparse.ArgumentParser) -> None:
    """``--dataset`` and ``--data-dir``: shared by every command that reads the data."""
    parser.add_argument("--dataset", default="fashion", help="data set name: fashion or mnist")
    add_data_dir_arg(parser)


def load_or_fetch(name: str, data_dir: str | None):
    """``load_dataset`` for a command: a download is announced on stdout (so stderr holds only a final
    error), and a data set that cannot be had (e.g. MNIST offline) is one line naming the way out."""
    spec = get_spec(name)
    if data_dir is not None:
        return load_dataset(name, data_dir)  # its errors already name the folder
    try:
        return load_dataset(name, download=False)
    except DataError:
        pass  # not here yet: download it
    print(
        f"{spec.title} not found locally: downloading it (as `fmnist data fetch --dataset {name}` would)",
        flush=True,
    )
    try:
        return load_dataset(name, quiet=True)
    except DataError as exc:
        raise DataError(
            f"{spec.title} is not available here ({exc}); put its four IDX files in a folder and pass --data-dir"
        ) from None


def register(sub) -> None:
    dsub = add_group(sub, "data")
    fetch = add_command(dsub, "fetch", cmd_fetch)
    add_source_args(fetch)
    fetch.add_argument(
        "--mirror",
        action="append",
        default=None,
        help="base URL to download from (repeatable); replaces the built-in mirrors",
    )
    fetch.add_argument("--retries", type=int, default=3, help="attempts per mirror (1 to 20)")
    fetch.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for a connection or data; a transfer slower than 16 KiB per this many "
        "seconds is abandoned as stalled",
    )

    verify = add_command(dsub, "verify", cmd_verify)
    add_source_args(verify)

    info = add_command(dsub, "info", cmd_info)
    add_source_args(info)
    info.add_argument("--json", action="store_true", help="print the summary as JSON")

    exp = add_command(dsub, "export", cmd_export)
    add_source_args(exp)
    exp.add_argument(
        "--format",
        choices=("npz", "csv", "png", "parquet"),
        default="npz",
        help="npz: Keras' keys x_train, y_train, x_test, y_test; parquet: the Hugging Face Hub's layout "
        '(needs pip install "fmnist[hf]")',
    )
    exp.add_argument("--out", type=Path, default=Path("exported"), help="output folder")
    exp.add_argument("--split", choices=("train", "t10k", "both"), default="both")
    exp.add_argument("--limit", type=int, default=None, help="only the first N images of each split")
    exp.add_argument(
        "--force",
        action="store_true",
        help="write into an output that is not an earlier export's (files the export did not write are kept)",
    )

    sprite = add_command(dsub, "sprite", cmd_sprite)
    add_source_args(sprite)
    sprite.add_argument("--out", type=Path, default=Path("sprite.png"))
    sprite.add_argument("--columns", type=int, default=30)
    sprite.add_argument("--split", choices=("train", "t10k"), default="train")
    sprite.add_argument("--seed", type=int, default=0)
    sprite.add_argument("--invert", action="store_true", help="dark articles on white")


MAX_SPRITE_COLUMNS = 500  # 14,000 pixels wide; more is a typo, not a picture


def cmd_fetch(args) -> int:
    """find or download the four files and verify them

    Find verified files locally (--data-dir, cache, system copy, Keras' cache) or download them.

    Example: fmnist data fetch --mirror http://127.0.0.1:8000/
    """
    try:
        check_settings(args.retries, args.timeout)
        if args.mirror is not None:
            args.mirror = check_mirrors(args.mirror)
    except ConfigError as exc:
        raise ConfigError(f"--{exc}") from None  # "--retries must ...", "--mirror ..."
    files = locate(
        args.dataset, args.data_dir, mirrors=args.mirror, retries=args.retries, timeout=args.timeout
    )
    print(f"{files.spec.title}: 4 files verified, from {files.describe()}")
    return 0


def cmd_verify(args) -> int:
    """check every file's checksum and header

    Verify the files against the published MD5s and the decompressed-content MD5s (and, for Fashion-MNIST, SHA-256s).

    Example: fmnist data verify --data-dir /usr/share/datasets/fashion-mnist
    """
    files = locate(args.dataset, args.data_dir, download_missing=False)
    for key, path in files.paths.items():
        print(f"ok  {path}  ({files.verified[key]})")
    print(f"{files.spec.title}: all 4 files verified, from {files.describe()}")
    return 0


def cmd_info(args) -> int:
    """counts per split and class, checksums, where the files came from

    Summarise the data set.

    Example: fmnist data info --json
    """
    info = summary(load_dataset(args.dataset, args.data_dir, quiet=False))
    print(json.dumps(info, indent=2) if args.json else format_summary(info))
    return 0


def cmd_export(args) -> int:
    """write the data as NPZ, CSV, PNG folders or Parquet

    Export the data. NPZ holds Keras' arrays x_train, y_train, x_test, y_test (np.load gives what
    keras.datasets.fashion_mnist.load_data() returns); CSV uses the common label,pixel1..pixel784 layout;
    PNG writes one folder per split and class; Parquet writes NAME-train.parquet and NAME-test.parquet in
    the Hugging Face Hub's layout (image: PNG bytes, label: ClassLabel with the class names), which
    datasets.load_dataset("parquet", data_files=...) reads.

    Example: fmnist data export --format csv --out exported/
    """
    from fmnist.data.export import export

    if args.limit is not None and args.limit < 1:
        raise ConfigError("--limit must be a positive number of images")
    ds = load_dataset(args.dataset, args.data_dir, quiet=False)
    kinds = ("train", "t10k") if args.split == "both" else (args.split,)
    for path in export(ds, args.out, args.format, kinds, args.limit, force=args.force):
        print(path)
    return 0


def cmd_sprite(args) -> int:
    """draw the README's sprite (each class takes three rows)

    Draw a grid of random samples, three rows per class.

    Example: fmnist data sprite --out sprite.png
    """
    from fmnist.viz.sprite import check_image_out, make_sprite, save_sprite

    if not 1 <= args.columns <= MAX_SPRITE_COLUMNS:
        raise ConfigError(f"--columns must be positive and at most {MAX_SPRITE_COLUMNS}, got {args.columns}")
    if not 0 <= args.seed < 2**32:
        raise ConfigError(f"--seed must be in [0, 2^32), got {args.seed}")
    ds = load_dataset(args.dataset, args.data_dir, quiet=False)
    check_image_out(args.out, ds)
    split = ds.split(args.split)
    canvas = make_sprite(
        np.asarray(split.images), np.asarray(split.labels), len(ds.classes), 3, args.columns, args.seed
    )
    print(save_sprite(args.out, canvas, invert=args.invert))
    return 0
