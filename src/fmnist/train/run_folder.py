"""Run folders: refuse to overwrite what is not ours, read a run's saved config, and say which settings
a ``--resume`` may change.

A run folder is ours when its ``config.json`` (written first) is a training config. ``--resume`` is
strict: settings that disagree with the saved config are refused; only the machine knobs may change,
and ``epochs`` may grow on a constant schedule.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection
from dataclasses import fields
from pathlib import Path

from fmnist.errors import ConfigError
from fmnist.train.config import TrainConfig

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
MACHINE_KNOBS = ("device", "threads", "data_dir", "compile", "tensorboard")  # may change on resume


def check_run_dir(
    run_dir: Path, cfg: TrainConfig, resume: bool, explicit: Collection[str] | None = None
) -> TrainConfig:
    """Refuse to overwrite another run or a folder of other files; on resume, return the saved config.

    ``explicit``: the settings the user gave (None: all of ``cfg``'s), compared with the saved ones.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: exists and is not a folder")
    if resume:
        return resume_config(run_dir, cfg, explicit)[0]
    if is_run_dir(run_dir):
        raise ConfigError(f"{run_dir} holds another run; pass --resume to continue it or choose a new --out")
    found = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []
    if found:
        listed = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise ConfigError(
            f"{run_dir} is not empty and is not an fmnist run (it holds {listed}); "
            "choose a new or empty --out so nothing in it is overwritten"
        )
    return cfg


def is_run_dir(run_dir: Path) -> bool:
    """True for a folder ``fit`` wrote into: its config.json (written first) is a training config."""
    try:
        saved = json.loads((run_dir / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(saved, dict) and {"model", "epochs", "seed"} <= saved.keys()


def read_run_config(run_dir: Path, machine: TrainConfig) -> TrainConfig:
    """The validated config.json of ``run_dir``, with ``machine``'s machine knobs."""
    saved_path = run_dir / CONFIG_FILE
    if not saved_path.exists():
        raise ConfigError(f"{run_dir}: nothing to resume (no {CONFIG_FILE})")
    try:
        saved = json.loads(saved_path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{saved_path}: unreadable run config ({exc})") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"{saved_path}: unreadable run config (not a JSON object)")
    saved.update({k: getattr(machine, k) for k in MACHINE_KNOBS})
    try:
        return TrainConfig(**saved).validate()
    except TypeError as exc:  # a key this version does not know, or a value of the wrong type
        raise ConfigError(f"{saved_path}: not a run config of this fmnist version ({exc})") from None
    except ConfigError as exc:
        raise ConfigError(f"{saved_path}: {exc}") from None


def config_conflicts(
    saved: TrainConfig | dict, cfg: TrainConfig, names: Collection[str], label: str = "saved"
) -> tuple[list[str], int]:
    """The settings in ``names`` where ``cfg`` disagrees with ``saved``, and the epochs to train to.

    More epochs than saved is no conflict when the schedule is constant: the learning rate of the
    epochs already trained does not depend on the total then (onecycle and cosine spread the decay
    over every epoch, so a longer run would not have trained its first epochs the same way).
    """
    saved = saved if isinstance(saved, dict) else saved.to_dict()
    conflicts, epochs = [], saved.get("epochs")
    for name in names:
        if (
            name in MACHINE_KNOBS
            or name == "preset"
            or name not in saved
            or saved[name] == getattr(cfg, name)
        ):
            continue
        if name == "epochs" and isinstance(epochs, int) and cfg.epochs > epochs:
            if saved.get("schedule") == "constant":
                epochs = cfg.epochs
                continue
            conflicts.append(
                f"--epochs {cfg.epochs} (saved {epochs}: the {saved.get('schedule')} schedule spreads its "
                f"learning-rate decay over the saved {epochs} epochs, so only runs with --schedule constant "
                "can be extended)"
            )
            continue
        flag = "--" + name.replace("_", "-")
        conflicts.append(f"{flag} {getattr(cfg, name)!r} ({label} {saved.get(name)!r})")
    return conflicts, epochs


def resume_config(
    run_dir: Path, cfg: TrainConfig, explicit: Collection[str] | None = None
) -> tuple[TrainConfig, list[str]]:
    """The config a resumed run goes on with, and notes on what changed; disagreement is refused.

    Machine knobs (device, threads, data folder, compile) come from ``cfg``; every other setting
    in ``explicit`` (None: all) must equal the saved one, except more epochs on a constant schedule.
    """
    saved = read_run_config(run_dir, cfg)
    names = [f.name for f in fields(TrainConfig)] if explicit is None else list(explicit)
    conflicts, epochs = config_conflicts(saved, cfg, names)
    if conflicts:
        raise ConfigError(
            f"--resume continues {run_dir} with its saved config, and these settings disagree with it: "
            f"{'; '.join(conflicts)}. Drop them, or train a new run with another --out"
        )
    notes = [f"epochs {saved.epochs} -> {epochs}"] if epochs != saved.epochs else []
    return dataclasses.replace(saved, epochs=epochs), notes
