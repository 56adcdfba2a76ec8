"""``fit``: a whole training run — model, optimiser, per-epoch checkpoints, resume, model selection.

The run folder holds ``config.json``, ``metrics.jsonl`` (one line per epoch), ``checkpoint.pt``
(last epoch, optimiser and RNG states: for ``--resume``) and ``model.pt`` (the best epoch by
validation accuracy, inference only). The test set is never read here.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fmnist.errors import ConfigError
from fmnist.fsio import append_line, read_jsonl, write_json, write_text
from fmnist.models.checkpoint import MODEL_FILE, TRAIN_STATE_FILE, load_record, model_record, save, unwrap
from fmnist.models.registry import build_model, param_count
from fmnist.train.config import TrainConfig
from fmnist.train.data import TrainingData
from fmnist.train.device import resolve_device, set_threads
from fmnist.train.distributed import World, from_env, setup, teardown
from fmnist.train.loop import EMA, accuracy_and_loss, predict_logits, train_one_epoch

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
STATE_FORMAT = "fmnist-train-state/1"
MACHINE_KNOBS = ("device", "threads", "data_dir", "compile")  # may change when a run is resumed


@dataclass
class FitResult:
    model: nn.Module  # the best model (by validation accuracy), in eval mode
    history: list[dict]  # one dict per epoch
    best_epoch: int
    best_val_acc: float
    train_time_s: float  # summed training time, evaluation excluded
    run_dir: Path | None
    record: dict = field(default_factory=dict)  # the model.pt record (without state dict)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Weight decay on conv/linear weights only, not on BatchNorm or biases."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)


def check_run_dir(run_dir: Path, cfg: TrainConfig, resume: bool) -> TrainConfig:
    """Refuse to overwrite another run; on resume, return the saved config (machine knobs may change)."""
    saved_path = run_dir / CONFIG_FILE
    if not resume:
        if saved_path.exists() or (run_dir / TRAIN_STATE_FILE).exists():
            raise ConfigError(
                f"{run_dir} holds another run; pass --resume to continue it or choose a new --out"
            )
        return cfg
    if not saved_path.exists():
        raise ConfigError(f"{run_dir}: nothing to resume (no {CONFIG_FILE})")
    try:
        saved = json.loads(saved_path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{saved_path}: unreadable run config ({exc})") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"{saved_path}: unreadable run config (not a JSON object)")
    saved.update({k: getattr(cfg, k) for k in MACHINE_KNOBS})
    try:
        saved_cfg = TrainConfig(**saved)
    except TypeError as exc:  # a key this version does not know
        raise ConfigError(f"{saved_path}: not a run config of this fmnist version ({exc})") from None
    return saved_cfg.validate()


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def fit(
    cfg: TrainConfig,
    data: TrainingData,
    run_dir: Path | None = None,
    *,
    resume: bool = False,
    on_epoch_end: Callable[[int, nn.Module, dict], None] | None = None,
    log: Callable[[str], None] | None = print,
    progress_bar: bool | None = None,
    world: World | None = None,
    stop_after: int | None = None,
) -> FitResult:
    """Train per ``cfg`` on ``data``; with ``run_dir``, write checkpoints every epoch and resume from them.

    ``stop_after`` ends this invocation after that many epochs (a scheduler's time slot); ``--resume``
    continues it. ``on_epoch_end(epoch, model, row)`` runs after each epoch outside the timed region (benchmarks use
    it to score time-to-accuracy); the model it gets is the one evaluated (EMA weights when enabled).
    """
    world = world or World()
    say = log if (log is not None and world.is_main) else (lambda _msg: None)
    device = data.train_x.device
    if world.active and cfg.batch_size % world.size:
        raise ConfigError(f"--batch-size {cfg.batch_size} (global) must divide by the {world.size} processes")
    set_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, num_classes=len(data.classes), **cfg.model_kwargs()).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.whiten:
        from fmnist.train.whiten import whiten_first_layer

        if not whiten_first_layer(model, data.train_x, data.mean, data.std):
            raise ConfigError(
                f"--whiten needs a first layer that is a square conv on the image; {cfg.model} has none"
            )
    optimizer = make_optimizer(model, cfg)
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    eval_model = (
        build_model(cfg.model, num_classes=len(data.classes), **cfg.model_kwargs()).to(device)
        if ema
        else model
    )
    if ema and cfg.channels_last:
        eval_model = eval_model.to(memory_format=torch.channels_last)
    run_model = model
    if world.active:
        from torch.nn.parallel import DistributedDataParallel

        run_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    run_model = torch.compile(run_model) if cfg.compile else run_model

    n = len(data.train_y)
    steps_per_epoch = max(1, n // min(cfg.batch_size, n))
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = int(round(cfg.warmup_epochs * steps_per_epoch))
    start_epoch, step, best_val, best_epoch, stale, train_time = 0, 0, -1.0, -1, 0, 0.0
    history: list[dict] = []

    writes = run_dir is not None and world.is_main  # only rank 0 writes files
    if run_dir is not None:
        if writes:
            run_dir.mkdir(parents=True, exist_ok=True)
        state_path = run_dir / TRAIN_STATE_FILE
        if resume and state_path.exists():
            state = torch.load(state_path, map_location=device, weights_only=False)
            if state.get("format") != STATE_FORMAT:
                raise ConfigError(f"{state_path}: not an fmnist training checkpoint")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if ema is not None and state.get("ema") is not None:
                ema.state, ema.updates = state["ema"], state["ema_updates"]
            start_epoch, step = state["epoch"], state["step"]
            best_val, best_epoch, stale = state["best_val_acc"], state["best_epoch"], state["stale"]
            train_time = state["train_time_s"]
            history = [r for r in read_jsonl(run_dir / METRICS_FILE) if r.get("epoch", 0) <= start_epoch]
            if writes:
                write_text(run_dir / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in history))
            say(
                f"resuming {run_dir} after epoch {start_epoch}/{cfg.epochs} "
                f"(saved by {state.get('world_size', 1)} process(es), now {world.size})"
            )
        elif writes:
            write_json(run_dir / CONFIG_FILE, cfg.to_dict())
            if resume:  # killed before the first checkpoint: start again, without a row it may have left
                write_text(run_dir / METRICS_FILE, "")

    say(
        f"model {cfg.model}: {param_count(model):,} parameters; device {device}, {torch.get_num_threads()} threads"
    )
    say(
        f"data {data.dataset} (fingerprint {data.fingerprint}): {n:,} train / {len(data.val_y):,} val images"
        + (
            f"; {world.size} processes, {cfg.batch_size // world.size} images each per step"
            if world.active
            else ""
        )
    )
    show_bar = (sys.stderr.isatty() if progress_bar is None else progress_bar) and world.is_main

    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        bar = None
        if show_bar:
            from tqdm import tqdm

            bar = tqdm(
                total=steps_per_epoch, desc=f"epoch {epoch}/{cfg.epochs}", file=sys.stderr, leave=False
            )

        def progress(done: int, loss: float, acc: float, ips: float, bar=bar) -> None:
            if bar is not None:
                bar.n = done
                bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}", img_s=f"{ips:,.0f}")

        row = train_one_epoch(
            run_model, optimizer, data, cfg, epoch, step, total_steps, warmup_steps, ema, progress, world
        )
        if bar is not None:
            bar.close()
        step = row.pop("step")
        train_time += row["train_time_s"]
        if ema is not None:
            eval_model.load_state_dict(ema.state)
        t_eval = time.perf_counter()
        val_acc, val_loss = accuracy_and_loss(
            predict_logits(
                eval_model, data.val_x, data.mean, data.std, cfg.eval_batch_size, False, cfg.channels_last
            ),
            data.val_y,
        )
        row = {
            "epoch": epoch,
            **row,
            "val_acc": val_acc,
            "val_loss": val_loss,
            "eval_time_s": time.perf_counter() - t_eval,
            "cum_train_time_s": train_time,
        }
        improved = len(data.val_y) == 0 or val_acc > best_val
        if improved:
            best_val, best_epoch, stale = (val_acc if len(data.val_y) else float("nan")), epoch, 0
        else:
            stale += 1
        history.append(row)
        say(
            f"epoch {epoch:>3}/{cfg.epochs}  loss {row['train_loss']:.4f}  train {row['train_acc']:.4f}  "
            f"val {val_acc:.4f}  {row['images_per_s']:,.0f} img/s  {row['train_time_s']:.1f}s"
            + ("  *" if improved else "")
        )
        if writes:
            meta = dict(
                arch=cfg.model,
                arch_kwargs=cfg.model_kwargs(),
                classes=data.classes,
                mean=data.mean,
                std=data.std,
                dataset=data.dataset,
                fingerprint=data.fingerprint,
                epoch=epoch,
                config=cfg.to_dict(),
                metrics={"val_acc": val_acc, "val_loss": val_loss, "cum_train_time_s": train_time},
            )
            # The row goes before the checkpoint: a kill between the two re-runs this epoch and resume drops
            # the row (it keeps rows up to the checkpoint's epoch); the other order would lose the row.
            append_line(run_dir / METRICS_FILE, json.dumps(row))
            if improved:
                save(model_record(eval_model, **meta), run_dir / MODEL_FILE)
            save(
                {
                    "format": STATE_FORMAT,
                    "config": cfg.to_dict(),
                    "epoch": epoch,
                    "step": step,
                    "model": unwrap(model).state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "ema": ema.state if ema else None,
                    "ema_updates": ema.updates if ema else 0,
                    "best_val_acc": best_val,
                    "best_epoch": best_epoch,
                    "stale": stale,
                    "train_time_s": train_time,
                    "rng": _rng_state(),
                    "world_size": world.size,
                },
                run_dir / TRAIN_STATE_FILE,
            )
        elif improved:
            best_state = {k: v.detach().clone() for k, v in unwrap(eval_model).state_dict().items()}
        if on_epoch_end is not None:
            on_epoch_end(epoch, eval_model, row)
        if stop_after is not None and epoch - start_epoch >= stop_after and epoch < cfg.epochs:
            say(f"stopping after {stop_after} epoch(s) as asked; continue with --resume")
            break
        if cfg.patience and stale >= cfg.patience:
            say(f"early stop: no better validation accuracy for {cfg.patience} epochs")
            break

    best = build_model(cfg.model, num_classes=len(data.classes), **cfg.model_kwargs()).to(device)
    record: dict = {}
    if world.active:
        import torch.distributed as dist

        dist.barrier()  # rank 0 has written model.pt
    if run_dir is not None and (run_dir / MODEL_FILE).exists():
        record = load_record(run_dir / MODEL_FILE, map_location=device)
        best.load_state_dict(record.pop("state_dict"))
    elif run_dir is None and best_epoch > 0:
        best.load_state_dict(best_state)
    else:
        best.load_state_dict(unwrap(eval_model).state_dict())
    if cfg.channels_last:
        best = best.to(memory_format=torch.channels_last)
    return FitResult(best.eval(), history, best_epoch, best_val, train_time, run_dir, record)


def train(cfg: TrainConfig, run_dir: Path | None, resume: bool = False, **kwargs) -> FitResult:
    """Load the data per ``cfg`` and ``fit``: the whole of ``fmnist train``."""
    from fmnist.train.data import load_training_data

    world = from_env()
    device = setup(world, resolve_device(cfg.device))
    try:
        if run_dir is not None:
            cfg = check_run_dir(run_dir, cfg, resume)
        if world.active:
            import torch.distributed as dist

            dist.barrier()  # every rank checked the run folder before rank 0 writes into it
        data = load_training_data(cfg, device)
        return fit(cfg, data, run_dir, resume=resume, world=world, **kwargs)
    finally:
        teardown(world)
