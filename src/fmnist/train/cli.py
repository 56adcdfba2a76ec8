"""``fmnist train``: every TrainConfig field is a flag, documented by the field's own comment."""

from __future__ import annotations

import argparse
import inspect
import re
from dataclasses import fields
from pathlib import Path

from fmnist.cli import add_command

SKIP = {"preset"}


def field_help() -> dict[str, str]:
    """The ``# comment`` after each TrainConfig field, so the flag help and the code cannot drift."""
    from fmnist.train.config import TrainConfig

    try:
        source = inspect.getsource(TrainConfig)
    except (OSError, TypeError):
        return {}
    return dict(re.findall(r"^\s+(\w+):[^#\n]*#\s*(.+)$", source, flags=re.M))


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per config field, default None so only explicit flags override preset and TOML."""
    from fmnist.train.config import TrainConfig

    helps = field_help()
    for f in fields(TrainConfig):
        if f.name in SKIP:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type).split(" ")[0]
        help_text = f"{helps.get(f.name, '')} (default: {f.default!r})"
        if kind == "bool":
            parser.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            parser.add_argument(
                flag,
                dest=f.name,
                type={"int": int, "float": float}.get(kind, str),
                default=None,
                metavar=f.name.upper(),
                help=help_text,
            )


def register(sub) -> None:
    p = add_command(
        sub,
        "train",
        help="train a CNN (CPU or CUDA), checkpoint every epoch, resume",
        description="Train a convolutional network. A validation split carved from the training set "
        "selects the best epoch; the test set is not read. The run folder gets config.json, metrics.jsonl, "
        "checkpoint.pt (for --resume) and model.pt (best epoch).",
        example="fmnist train --preset cpu-fast --out runs/first && fmnist evaluate runs/first",
    )
    from fmnist.train.config import PRESETS

    p.add_argument("--preset", default=None, help=f"named recipe: {', '.join(PRESETS)}")
    p.add_argument(
        "--config", dest="config_file", default=None, metavar="FILE.toml", help="TOML file of config keys"
    )
    p.add_argument("--out", type=Path, default=None, help="run folder (default: runs/MODEL-TIMESTAMP)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--evaluate", action="store_true", help="evaluate on the test set when training ends")
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        metavar="N",
        help="train at most N epochs in this invocation, then exit; --resume continues",
    )
    add_config_flags(p)
    p.set_defaults(func=cmd_train)


def config_from_args(args) -> object:
    from fmnist.train.config import TrainConfig, make_config

    overrides = {f.name: getattr(args, f.name, None) for f in fields(TrainConfig) if f.name not in SKIP}
    return make_config(args.preset, args.config_file, **overrides)


def default_run_dir(model: str) -> Path:
    import time

    return Path("runs") / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"


def cmd_train(args) -> int:
    from fmnist.errors import ConfigError
    from fmnist.train.trainer import check_run_dir, train

    cfg = config_from_args(args)
    if args.resume and args.out is None:
        raise ConfigError("--resume needs --out RUN_DIR")
    run_dir = args.out or default_run_dir(cfg.model)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: exists and is not a folder")
    if args.resume:
        cfg = check_run_dir(run_dir, cfg, resume=True)  # print the saved config the run goes on with
    from fmnist.train.distributed import from_env

    main_rank = from_env().is_main  # under torchrun only rank 0 talks
    if main_rank:
        from fmnist.train.device import preset_size_note, resolve_device

        print("config:\n" + cfg.format())
        note = preset_size_note(cfg.preset, resolve_device(cfg.device), cfg.bf16)
        if note:
            print(note)
    if args.stop_after is not None and args.stop_after < 1:
        raise ConfigError("--stop-after must be positive")
    result = train(cfg, run_dir, resume=args.resume, stop_after=args.stop_after)
    if not main_rank:
        return 0
    print(
        f"best epoch {result.best_epoch}: val accuracy {result.best_val_acc:.4f}; "
        f"training time {result.train_time_s:.1f}s; run folder {run_dir}"
    )
    if args.evaluate:
        from fmnist.evaluate.report import evaluate_run

        evaluation = evaluate_run(run_dir)
        print(
            f"test accuracy {evaluation['accuracy']:.4f} (data fingerprint {evaluation['data_fingerprint']})"
        )
    return 0
