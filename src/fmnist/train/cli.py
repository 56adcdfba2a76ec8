"""``fmnist train``: every TrainConfig field is a flag; help and type come from the field itself."""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import fields
from pathlib import Path

from fmnist.cli import add_command
from fmnist.errors import ConfigError
from fmnist.train.config import PRESETS, TrainConfig, field_types, flag, load_toml, make_config
from fmnist.train.device import preset_size_note, resolve_device
from fmnist.train.run_folder import MACHINE_KNOBS, check_run_dir, resume_config

# Training and evaluation (torch) are imported inside cmd_train: `fmnist --help` stays light.
SKIP = {"preset"}


def field_help() -> dict[str, str]:
    """Each TrainConfig field's help text (its ``metadata["help"]``): one source for code and ``--help``."""
    return {f.name: f.metadata.get("help", "") for f in fields(TrainConfig)}


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per config field, default None so only explicit flags override preset and TOML.

    The flag's type is the field's annotation without None (``int | None`` -> int), from the type hints.
    """
    helps = field_help()
    kinds = field_types()
    for f in fields(TrainConfig):
        if f.name in SKIP:
            continue
        kind, _optional = kinds[f.name]
        help_text = f"{helps[f.name]} (default: {f.default!r})"
        if kind is bool:
            parser.add_argument(
                flag(f.name),
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            parser.add_argument(
                flag(f.name), dest=f.name, type=kind, default=None, metavar=f.name.upper(), help=help_text
            )


def register(sub) -> None:
    p = add_command(sub, "train", cmd_train)
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


def config_from_args(args) -> TrainConfig:
    overrides = {f.name: getattr(args, f.name, None) for f in fields(TrainConfig) if f.name not in SKIP}
    return make_config(args.preset, args.config_file, **overrides)


def default_run_dir(model: str) -> Path:
    return Path("runs") / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"


def _explicit_settings(args) -> set[str]:
    """The config fields this command line sets: its flags, and the keys of --preset and --config."""
    names = {
        f.name for f in fields(TrainConfig) if f.name not in SKIP and getattr(args, f.name, None) is not None
    }
    if args.preset is not None:
        names |= set(PRESETS.get(args.preset, {}))
    if args.config_file is not None:
        names |= set(load_toml(args.config_file))
    return names


def cmd_train(args) -> int:
    """train a CNN (CPU or CUDA), checkpoint every epoch, resume

    Train a convolutional network. A validation split carved from the training set selects the best
    epoch; the test set is not read. The run folder gets config.json, metrics.jsonl, checkpoint.pt (for
    --resume) and model.pt (best epoch).

    Example: fmnist train --preset cpu-fast --out runs/first && fmnist evaluate runs/first
    """
    from fmnist.train.distributed import from_env
    from fmnist.train.trainer import train

    cfg = config_from_args(args)
    if args.resume and args.out is None:
        raise ConfigError("--resume needs --out RUN_DIR")
    if args.stop_after is not None and args.stop_after < 1:
        raise ConfigError("--stop-after must be positive")
    run_dir = args.out or default_run_dir(cfg.model)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: exists and is not a folder")
    notes: list[str] = []
    if args.resume:  # the saved config, with this command's machine knobs; other settings must agree
        cfg, notes = resume_config(run_dir, cfg, _explicit_settings(args))
    else:
        check_run_dir(run_dir, cfg, resume=False)  # before printing anything: a refused folder is one line
    main_rank = from_env().is_main  # under torchrun only rank 0 talks
    if main_rank:
        if args.resume:
            machine = ", ".join(f"{k}={getattr(cfg, k)!r}" for k in MACHINE_KNOBS)
            print(
                f"resume: {run_dir} keeps its saved config; from this command: {'; '.join([machine, *notes])}"
            )
        print("config:\n" + cfg.format())
        note = preset_size_note(cfg.preset, resolve_device(cfg.device), cfg.bf16)
        if note:
            print(note)
    result = train(cfg, run_dir, resume=args.resume, stop_after=args.stop_after)
    if not main_rank:
        return 0
    kept = (
        f"last epoch {result.best_epoch} kept (no validation split)"
        if math.isnan(result.best_val_acc)
        else f"best epoch {result.best_epoch}: val accuracy {result.best_val_acc:.4f}"
    )
    print(f"{kept}; training time {result.train_time_s:.1f}s; run folder {run_dir}")
    if args.evaluate:
        from fmnist.evaluate.report import evaluate_run

        evaluation = evaluate_run(run_dir)
        print(f"test accuracy {evaluation.accuracy:.4f} (data fingerprint {evaluation.data_fingerprint})")
    return 0
