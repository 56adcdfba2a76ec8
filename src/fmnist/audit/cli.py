"""``fmnist audit``: duplicates, class balance, pixel statistics and likely label errors of a data set."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from fmnist.audit.duplicates import NEAR_RMS
from fmnist.cli import add_command, add_device_arg
from fmnist.data.cli import add_source_args, load_or_fetch
from fmnist.errors import ConfigError

# The audit (torch, matplotlib) is imported inside the command: `fmnist --help` stays light.


def register(sub) -> None:
    p = add_command(sub, "audit", cmd_audit)
    add_source_args(p)
    p.add_argument("--out", type=Path, default=Path("audit"), help="output folder")
    p.add_argument(
        "--run", type=Path, default=None, help="score the test split's labels with this run's model"
    )
    p.add_argument(
        "--label-errors",
        choices=("cnn", "none"),
        default="cnn",
        help="cnn: rank likely label errors; none: skip",
    )
    p.add_argument("--folds", type=int, default=5, help="K for the cross-validated label scores")
    p.add_argument("--epochs", type=int, default=None, help="epochs per fold model (default 3)")
    p.add_argument("--width", type=int, default=None, help="fastcnn width of the fold models (default 16)")
    p.add_argument(
        "--threshold", type=float, default=None, help="near-duplicate RMS distance, grey levels (default 6)"
    )
    p.add_argument(
        "--limit", type=int, default=None, help="audit only the first N images of each split (quick runs)"
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the folds and the fold models")
    add_device_arg(p, note="for the fold models")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for the search and the fold models "
        "(default: all cores; 1 is faster on a busy machine)",
    )


def cmd_audit(args) -> int:
    """find duplicate images, class imbalance and likely label errors

    Audit the data set. Exact duplicates (identical bytes) and near duplicates (RMS pixel difference at
    most --threshold grey levels, exact search) within train, within test and between them; class
    balance and per-class pixel statistics; likely label errors, ranked by the out-of-sample probability
    of the given label. By default those probabilities come from K-fold cross-validation over both
    splits with a small CNN (no image is scored by a model trained on it; about 7 minutes on 2 busy CPU
    cores with --threads 1 for the full data set); with --run, that run's model scores the test split
    only, which training never reads. Writes audit.md, audit.json, CSVs and PNGs to --out.

    Example: fmnist audit --out audit/   # or, quick: fmnist audit --limit 2000 --folds 3 --out /tmp/audit
    """
    from fmnist.audit.labels import audit_config
    from fmnist.audit.report import audit
    from fmnist.models.inference import resolve_model_path

    threshold = NEAR_RMS if args.threshold is None else args.threshold
    if not threshold >= 0:
        raise ConfigError(f"--threshold must be >= 0 grey levels, got {args.threshold}")
    if args.limit is not None and args.limit < 2:
        raise ConfigError(f"--limit must be at least 2 images, got {args.limit}")
    if args.threads is not None and args.threads < 0:
        raise ConfigError(f"--threads must be >= 0, got {args.threads}")
    if args.folds < 2:
        raise ConfigError(f"--folds must be at least 2, got {args.folds}")
    cfg = None
    if args.label_errors == "cnn":
        if args.run is not None:
            resolve_model_path(args.run)  # a missing run is an error before any work
        else:
            cfg = audit_config(
                epochs=args.epochs, width=args.width, seed=args.seed, device=args.device, threads=args.threads
            )
    elif args.run is not None:
        raise ConfigError("--run is used only for label errors; drop it or drop --label-errors none")
    ds = load_or_fetch(args.dataset, args.data_dir)
    limit = args.limit
    splits = {
        kind: (np.asarray(ds.split(kind).images[:limit]), np.asarray(ds.split(kind).labels[:limit]))
        for kind in ("train", "t10k")
    }
    sizes = ", ".join(f"{k} {len(v[1]):,}" for k, v in splits.items())
    print(f"auditing {ds.spec.title} (fingerprint {ds.fingerprint}): {sizes} images", flush=True)
    if cfg is not None:
        print(
            f"label scores: {args.folds}-fold {cfg.model} width {cfg.width}, {cfg.epochs} epochs per fold",
            flush=True,
        )
    with blas_threads(args.threads):
        audit(
            splits,
            ds.classes,
            args.out,
            threshold=threshold,
            label_errors=args.label_errors,
            folds=args.folds,
            run_dir=args.run,
            cfg=cfg,
            references=ds.name == "fashion",  # the published mislabelled images are Fashion-MNIST's
            title=f"{ds.spec.title}" + (f" (first {limit:,} per split)" if limit else ""),
            log=lambda msg: print(msg, flush=True),
        )
    return 0


def blas_threads(threads: int | None):
    """Cap numpy's BLAS threads (the duplicate search) when asked and threadpoolctl is there; else no-op."""
    try:
        from threadpoolctl import threadpool_limits  # here: it comes with scikit-learn, an extra
    except ModuleNotFoundError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads or None)
