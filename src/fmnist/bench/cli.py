"""``fmnist bench``: the benchmark actions, sharing one results file.

``sklearn``, ``report`` and ``add`` are the scikit-learn baselines' (:mod:`fmnist.baselines.cli`);
``cnn`` is the CNN benchmark's, defined here. Each action is a pair: ``_add_NAME(actions)`` builds
its parser, ``cmd_NAME(args)`` runs it, with the heavy imports (torch, scikit-learn, Dask) inside:
``fmnist --help`` stays light.
"""

from __future__ import annotations

import argparse

from fmnist.baselines import cli as baselines_cli
from fmnist.baselines.results import append_external_result
from fmnist.cli import add_command, add_data_dir_arg, add_device_arg, add_group, config_from_args
from fmnist.errors import ConfigError
from fmnist.train.config import PRESETS


def _csv(kind):
    """An argparse type for comma-separated lists (an empty string gives an empty list)."""

    def parse(text: str) -> tuple:
        try:
            return tuple(kind(x) for x in text.split(",") if x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None

    return parse


def _add_cnn(actions) -> None:
    p = add_command(actions, "cnn", cmd_cnn)
    p.add_argument("--recipes", type=_csv(str), default=("cpu-fast",), help="presets, comma-separated")
    p.add_argument("--seeds", type=_csv(int), default=(0, 1, 2), help="seeds, comma-separated")
    p.add_argument(
        "--references",
        type=_csv(str),
        default=("tutorial",),
        help="plain-PyTorch peers: tutorial,resnet (empty: none)",
    )
    p.add_argument("--reference-epochs", type=int, default=10)
    p.add_argument(
        "--reference-resnet",
        default="64x2",
        metavar="WIDTHxDEPTH",
        help="size of the residual-net reference (64x2 on GPUs; 16x1 fits a CPU run)",
    )
    p.add_argument("--reference-seeds", type=_csv(int), default=(0,))
    p.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs (dry runs)")
    p.add_argument("--train-limit", type=int, default=None, help="train on the first N images (dry runs)")
    p.add_argument(
        "--test-limit", type=int, default=None, help="score the first N test images only (dry runs)"
    )
    p.add_argument("--width", type=int, default=None, help="override every model's width (dry runs)")
    p.add_argument("--ensemble", action="store_true", help="also flip-TTA and ensemble the seeds' models")
    add_device_arg(p)
    add_data_dir_arg(p)
    p.add_argument("--out", default="benchmarks/results/cnn", help="folder for cnn.json and cnn.md")
    p.add_argument(
        "--add-to",
        default=None,
        metavar="JSONL",
        help="also append one row per recipe to this results file (e.g. the scikit-learn one)",
    )


def cmd_cnn(args) -> int:
    """CNN time to accuracy, accuracy over seeds, throughput, vs a plain PyTorch reference

    Train each recipe (a `fmnist train --preset`) per seed through the real trainer; after every epoch,
    untimed, score the test set to find when 91/93/94/95/96% are first reached. The plain-PyTorch
    reference (Dataset + DataLoader, per-sample CPU transforms, fp32) runs in the same process for the
    ratio. Writes OUT/cnn.json and OUT/cnn.md.

    Example: fmnist bench cnn --recipes cpu-fast --seeds 0,1,2 --references tutorial --out benchmarks/results/cnn-cpu
    """
    from fmnist.bench.cnn import CnnBenchConfig, run_bench

    unknown = [r for r in args.recipes if r not in PRESETS]
    if unknown or not args.recipes:
        raise ConfigError(
            f"unknown recipe(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(PRESETS)}"
        )
    bad_refs = [r for r in args.references if r not in ("tutorial", "resnet")]
    if bad_refs:
        raise ConfigError(f"unknown reference(s) {', '.join(bad_refs)}; known: tutorial, resnet")
    if not args.seeds or args.reference_epochs < 1 or (args.epochs is not None and args.epochs < 1):
        raise ConfigError("--seeds must name at least one seed and epochs must be positive")
    try:
        ref_width, ref_depth = (int(v) for v in args.reference_resnet.lower().split("x"))
    except ValueError:
        raise ConfigError(
            f"--reference-resnet must be WIDTHxDEPTH, e.g. 16x1; got {args.reference_resnet!r}"
        ) from None
    if ref_width < 1 or ref_depth < 1:
        raise ConfigError(f"--reference-resnet sizes must be positive; got {args.reference_resnet!r}")
    result = run_bench(config_from_args(CnnBenchConfig, args, reference_resnet=(ref_width, ref_depth)))
    if args.add_to:
        from fmnist.baselines.results import cnn_bench_rows

        for row in cnn_bench_rows(result):
            append_external_result(args.add_to, row, "cnn")
    return 0


def _add_photos(actions) -> None:
    p = add_command(actions, "photos", cmd_photos)
    p.add_argument("model", metavar="RUN_DIR_OR_MODEL", help="run folder, model.pt or model.onnx")
    p.add_argument("folder", metavar="FOLDER", help="the photos, with labels.csv")
    p.add_argument("--labels", metavar="CSV", default=None, help="labels file (default: FOLDER/labels.csv)")
    p.add_argument(
        "--out", default="benchmarks/results/photos", help="folder for photos.json, photos.md and the sheet"
    )
    p.add_argument(
        "--backend", choices=("auto", "torch", "onnx"), default="auto", help="auto: by the model's suffix"
    )


def cmd_photos(args) -> int:
    """real photos: top-1/top-3 per class, abstentions, AUROC, a contact sheet

    Score a model on a folder of labelled photos (labels.csv: file, fashion_mnist_class, where a label
    may be a set of classes or "none of the ten"): top-1 and top-3 per source label, how often it
    abstains, and how well its abstain score separates garments from none-of-the-ten photos (AUROC).
    Writes OUT/photos.json, OUT/photos.md and OUT/contact-sheet.png (the 28x28 inputs with their
    predictions). Works with an ONNX export too.

    Example: fmnist bench photos runs/photo ../shared/photos --out benchmarks/results/photos
    """
    from fmnist.bench.photos import PhotoBenchConfig, run_photo_bench

    cfg = PhotoBenchConfig(args.model, args.folder, args.labels, args.out, args.backend)
    print(cfg)
    run_photo_bench(cfg)
    return 0


ACTIONS = (*baselines_cli.ACTIONS, _add_cnn, _add_photos)


def register(sub) -> None:
    actions = add_group(sub, "bench")
    for add in ACTIONS:
        add(actions)
