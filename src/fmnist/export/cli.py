"""``fmnist export``: write a run's model as ONNX or TorchScript and check it against torch."""

from __future__ import annotations

from fmnist.cli import add_command
from fmnist.errors import FmnistError

# The exporters (torch, onnx) are imported inside the command: `fmnist --help` stays light.
TOLERANCE = 1e-3  # largest |logit difference| accepted between the export and torch (float32 noise: ~1e-6)


FORCE_HELP = "replace an existing --out file that is not an fmnist export (never a file of the run)"


def register(sub) -> None:
    p = add_command(sub, "export", cmd_export)
    p.add_argument("run", metavar="RUN_DIR", help="run folder (or a model.pt file)")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx", help="export format")
    p.add_argument(
        "--out",
        default=None,
        help="output file (default: model.onnx or model.torchscript.pt in the run folder); never the model "
        "or another file of its run; an existing file only if an earlier export wrote it",
    )
    p.add_argument("--force", action="store_true", help=FORCE_HELP)


def cmd_export(args) -> int:
    """export a trained model as ONNX (or TorchScript) for serving without torch

    Write the run's model.pt as ONNX (dynamic batch axis; class names, mean/std, data fingerprint and
    metrics as metadata) or TorchScript, then compare its logits with torch's on seeded random images.
    ONNX runs under onnxruntime alone: `fmnist serve --backend onnx`.

    Example: fmnist export runs/latest --format onnx
    """
    from fmnist.export.exporters import check_export, export
    from fmnist.models.inference import load_model

    loaded = load_model(args.run, device="cpu")
    path = export(loaded, args.format, args.out, force=args.force)
    diff = check_export(loaded, path, args.format)
    size_kb = path.stat().st_size / 1024
    print(
        f"wrote {path} ({args.format}, {size_kb:.0f} KiB); largest |logit difference| vs torch on 256 random images: {diff:.2e}"
    )
    if diff > TOLERANCE:
        raise FmnistError(
            f"{path}: export disagrees with torch (|logit difference| {diff:.2e} > {TOLERANCE})"
        )
    return 0
