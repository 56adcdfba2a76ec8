"""``fmnist predict``: classify picture files and folders with a saved model.

A bad input among several does not stop the run: every good file is still classified, each
bad one (missing, empty, not a picture, damaged, or too big to decode, judged from its header)
gets its own ``fmnist: error: FILE: ...`` line on stderr (and an ``error`` entry with
``--json``), and the exit status is 2 at the end. A bad model path, ``--device`` or
``--save-processed`` stops at once, before any picture is read. Nothing is written anywhere
but in ``--save-processed DIR``.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

from fmnist.cli import CPU_BY_DEFAULT, add_command, add_device_arg
from fmnist.errors import FmnistError
from fmnist.fsio import write_bytes

# Prediction and picture decoding (Pillow; torch for .pt models) are imported inside the functions that
# need them: `fmnist --help` stays light.


def register(sub) -> None:
    p = add_command(sub, "predict", cmd_predict)
    p.add_argument("model", metavar="RUN_DIR_OR_MODEL", help="run folder, model.pt, or model.onnx")
    p.add_argument("inputs", metavar="IMAGE|FOLDER", nargs="+", help="picture files or folders of pictures")
    p.add_argument("--top-k", type=int, default=3, help="how many classes to print per picture")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of text")
    p.add_argument(
        "--save-processed",
        metavar="DIR",
        default=None,
        help="write the 28x28 inputs the model saw as PNGs here",
    )
    add_device_arg(p, default="cpu", note=CPU_BY_DEFAULT)
    p.add_argument("--batch-size", type=int, default=1024, help="pictures per forward pass")
    p.add_argument(
        "--max-decoded-mb",
        type=float,
        default=128.0,  # image_decode.DEFAULT_MAX_DECODED_BYTES (not imported here: --help stays light)
        help="skip a picture that would take more than this to decode, MiB (judged from its header)",
    )


def expand_inputs(args: list[str]) -> tuple[list[Path], list[dict]]:
    """Files and folders -> (picture paths in order, ``{"input", "error"}`` for arguments giving none)."""
    from fmnist.predict.preprocess_photo import IMAGE_SUFFIXES, find_images

    paths: list[Path] = []
    errors: list[dict] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            found = find_images(path)
            if not found:
                errors.append(
                    {
                        "input": arg,
                        "error": f"{path}: no pictures in this folder (looked for {', '.join(IMAGE_SUFFIXES)})",
                    }
                )
            paths.extend(found)
        elif path.exists():
            paths.append(path)
        else:
            errors.append({"input": arg, "error": f"{path}: no such file or folder"})
    return paths, errors


def processed_name(index: int, path: Path) -> str:
    """``00012-shoe.png``: input order first (names from different folders may clash), then the stem."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem)[:60] or "image"
    return f"{index:05d}-{stem}.png"


NOT_ONE_OF_THEM = "not one of the ten classes?"


def format_line(result: dict) -> str:
    ranked = ", ".join(f"{t['class']} {t['probability']:.1%}" for t in result["top"])
    if result.get("abstain"):
        return f"{result['input']}: {NOT_ONE_OF_THEM} (best guesses: {ranked})"
    return f"{result['input']}: {ranked}"


def cmd_predict(args) -> int:
    """classify photos or Fashion-MNIST-style pictures with a trained model

    Turn each picture into a Fashion-MNIST-style 28x28 input (a photo's garment cut from its background
    and negated, as the data set's packshots were; trimmed, fitted, centred) and print the top classes
    with calibrated probabilities, or "not one of the ten classes?" before them when the model is not
    sure enough (its calibration.json). Pictures: PNG, JPEG, WebP, GIF (first
    frame), BMP, TIFF, any size. A folder means every picture under it. The model: a run folder, its
    model.pt, or an ONNX export (*.onnx).

    Example: fmnist predict runs/latest shoe.jpg photos/ --top-k 3
    """
    from fmnist.predict.image_decode import MIB, DecodeLimits
    from fmnist.predict.predict import load, predict
    from fmnist.predict.preprocess_photo import encode_png

    if args.batch_size < 1:
        raise FmnistError(f"--batch-size must be positive, got {args.batch_size}")
    if not math.isfinite(args.max_decoded_mb) or not 1 <= args.max_decoded_mb <= 65536:
        raise FmnistError(f"--max-decoded-mb must be a number from 1 to 65536, got {args.max_decoded_mb!r}")
    if args.save_processed:
        save_to = Path(args.save_processed)
        if save_to.exists() and not save_to.is_dir():
            raise FmnistError(f"--save-processed {save_to}: exists and is not a folder")
    model = load(args.model, device=args.device)
    if getattr(model, "calibration_note", ""):
        print(model.calibration_note, file=sys.stderr)
    if not 1 <= args.top_k <= len(model.classes):
        raise FmnistError(f"--top-k must be between 1 and {len(model.classes)}, got {args.top_k}")
    paths, errors = expand_inputs(args.inputs)
    results = predict(
        model,
        paths,
        top_k=args.top_k,
        on_error="report",
        names=[str(p) for p in paths],
        batch_size=args.batch_size,
        limits=DecodeLimits(max_decoded_bytes=int(args.max_decoded_mb * MIB)),
    )
    errors += [r for r in results if "error" in r]
    if args.save_processed:
        out = Path(args.save_processed)
        for i, (path, r) in enumerate(zip(paths, results, strict=True)):
            if "processed" in r:
                write_bytes(out / processed_name(i, path), encode_png(r["processed"]))
    if args.json:
        rows = [{k: v for k, v in r.items() if k != "processed"} for r in results if "error" not in r]
        print(json.dumps(rows + errors, indent=2))
    else:
        for r in results:
            if "error" not in r:
                print(format_line(r))
    for e in errors:
        print(f"fmnist: error: {e['error']}", file=sys.stderr)
    return 2 if errors else 0
