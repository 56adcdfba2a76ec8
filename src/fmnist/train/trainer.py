"""``fit``: a whole training run — model, optimiser, per-epoch checkpoints, resume, model selection.

The run folder holds ``config.json``, ``metrics.jsonl`` (one line per epoch), ``checkpoint.pt``
(a :class:`TrainState`: last epoch, optimiser and RNG states, for ``--resume``) and ``model.pt``
(the best epoch by validation accuracy, inference only). The test set is never read here.

Both files are read as data (``weights_only``), never unpickled as code. ``--resume`` is strict: the
checkpoint must be this run's, and settings that disagree with the saved config are refused (only the
machine knobs may change, and ``epochs`` may grow on a constant schedule; see :mod:`.run_folder`). A
run whose loss or weights stop being finite ends with one line before anything of that epoch is saved.
"""

from __future__ import annotations

import json
import math
import random
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from fmnist.errors import ConfigError
from fmnist.fsio import append_line, read_jsonl, write_json, write_text
from fmnist.models.calibration import Calibration, fit_on_validation, write_calibration
from fmnist.models.checkpoint import (
    MODEL_FILE,
    NUMPY_RNG_GLOBALS,
    TRAIN_STATE_FILE,
    check_tensors,
    load_record,
    model_record,
    safe_load,
    save,
    state_dict_mismatch,
    unwrap,
)
from fmnist.models.inference import logits_of
from fmnist.models.record import model_digest
from fmnist.models.registry import build_from_config, param_count
from fmnist.train.config import TrainConfig
from fmnist.train.data import TrainingData, load_training_data
from fmnist.train.device import resolve_device, set_threads
from fmnist.train.distributed import World, from_env, setup, teardown
from fmnist.train.loop import EMA, Progress, RunPlan, check_finite, evaluate, train_one_epoch
from fmnist.train.run_folder import CONFIG_FILE, METRICS_FILE, check_run_dir, config_conflicts
from fmnist.train.tensorboard import TensorBoardLog
from fmnist.train.whiten import whiten_first_layer

STATE_FORMAT = "fmnist-train-state/1"
COUNTERS = ("epoch", "step", "best_val_acc", "best_epoch", "stale", "train_time_s")  # TrainState's numbers
STATE_KINDS = {  # what a training checkpoint holds besides tensors, by type
    "epoch": int,
    "step": int,
    "model": dict,
    "optimizer": dict,
    "ema_updates": int,
    "best_val_acc": float,
    "best_epoch": int,
    "stale": int,
    "train_time_s": float,
    "config": dict,
}


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


def new_model(cfg: TrainConfig, data: TrainingData) -> nn.Module:
    """A fresh model for ``cfg`` on the data's device, in the configured memory layout."""
    model = build_from_config(cfg, len(data.classes)).to(data.train_x.device)
    return model.to(memory_format=torch.channels_last) if cfg.channels_last else model


def _rng_state() -> dict:
    """Every RNG's state as tensors and plain values, so the file loads with ``weights_only=True``."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [name, keys.tolist(), pos, has_gauss, gauss],
        "python": list(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict) -> None:
    """Put back what :func:`_rng_state` saved (also the numpy-array form of older checkpoints)."""
    torch.set_rng_state(state["torch"].cpu())
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([t.cpu() for t in cuda])


def read_train_state(path: Path, device: torch.device, cfg: TrainConfig) -> dict:
    """checkpoint.pt, read as data and checked against ``cfg``: anything else is one line."""
    state = safe_load(path, device, allow=NUMPY_RNG_GLOBALS)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ConfigError(f"{path}: not an fmnist training checkpoint (format {STATE_FORMAT} expected)")
    for key, kind in STATE_KINDS.items():
        value = state.get(key)
        if isinstance(value, bool) or not isinstance(value, (int | float) if kind is float else kind):
            raise ConfigError(f"{path}: damaged training checkpoint ({key!r} is not of type {kind.__name__})")
    check_tensors(state["model"], str(path), "model")
    names = [f.name for f in fields(TrainConfig)]
    conflicts, _ = config_conflicts(state["config"], cfg, names, label="checkpoint:")
    if conflicts or not 0 <= state["epoch"] <= cfg.epochs:
        raise ConfigError(
            f"{path}: written by another run than {path.parent / CONFIG_FILE} describes "
            f"({'; '.join(conflicts) or 'epoch ' + str(state['epoch'])}); it cannot be resumed here"
        )
    return state


def _load_weights(module: nn.Module, weights: dict, where: Path) -> None:
    why = state_dict_mismatch(module.state_dict(), weights)
    if why:
        raise ConfigError(f"{where}: its weights do not fit this run's model ({why})")
    module.load_state_dict(weights)


def _slots_fit(optimizer: torch.optim.Optimizer) -> bool:
    """Every momentum buffer etc. has its weight's shape (another model's optimiser state does not)."""
    return all(
        not (isinstance(v, torch.Tensor) and v.dim()) or v.shape == param.shape
        for param, slots in optimizer.state.items()
        for v in slots.values()
    )


@dataclass
class TrainState:
    """What a run carries from one epoch to the next; ``checkpoint.pt`` is this, saved as data.

    The RNG states are not fields: they are read from the generators when saving and put back when
    loading (each epoch also reseeds from :func:`fmnist.train.loop.epoch_seed`).
    """

    model: nn.Module  # the bare module being trained (never a DDP / compile wrapper)
    optimizer: torch.optim.Optimizer
    ema: EMA | None  # the weights' moving average, when cfg.ema_decay > 0
    epoch: int = 0  # epochs finished
    step: int = 0  # optimiser steps taken
    best_val_acc: float = -1.0  # NaN when there is no validation split
    best_epoch: int = -1
    stale: int = 0  # epochs since the best one (early stopping)
    train_time_s: float = 0.0  # summed training time, evaluation excluded

    @classmethod
    def start(cls, cfg: TrainConfig, data: TrainingData) -> TrainState:
        """Epoch 0: a fresh model (its first layer whitened when asked), its optimiser and EMA."""
        model = new_model(cfg, data)
        if cfg.whiten and not whiten_first_layer(model, data.train_x, data.mean, data.std):
            raise ConfigError(
                f"--whiten needs a first layer that is a square conv on the image; {cfg.model} has none"
            )
        return cls(
            model, make_optimizer(model, cfg), EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        )

    def select(self, val_acc: float) -> bool:
        """Model selection after an epoch: True when it is the best so far by validation accuracy
        (without a validation split, NaN, every epoch is: the last one is kept)."""
        improved = math.isnan(val_acc) or val_acc > self.best_val_acc
        if improved:
            self.best_val_acc, self.best_epoch, self.stale = val_acc, self.epoch, 0
        else:
            self.stale += 1
        return improved

    def to_dict(self, cfg: TrainConfig, world_size: int = 1) -> dict:
        """checkpoint.pt: everything ``--resume`` needs, tensors and plain values only."""
        return {
            "format": STATE_FORMAT,
            "config": cfg.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state if self.ema else None,
            "ema_updates": self.ema.updates if self.ema else 0,
            **{name: getattr(self, name) for name in COUNTERS},
            "world_size": world_size,
            "rng": _rng_state(),
        }

    def save(self, path: Path, cfg: TrainConfig, world_size: int = 1) -> None:
        save(self.to_dict(cfg, world_size), path)

    def load(self, path: Path, cfg: TrainConfig) -> dict:
        """Put a checked checkpoint.pt (:func:`read_train_state`) into this state: weights, optimiser,
        EMA, counters and RNGs. A file that does not fit is one line. Returns the file's dict."""
        saved = read_train_state(path, next(self.model.parameters()).device, cfg)
        _load_weights(self.model, saved["model"], path)
        try:
            self.optimizer.load_state_dict(saved["optimizer"])
            if not _slots_fit(self.optimizer):
                raise ValueError("optimiser state of another shape")
            if self.ema is not None and saved.get("ema") is not None:
                check_tensors(saved["ema"], str(path), "ema")
                if state_dict_mismatch(self.ema.state, saved["ema"]):
                    raise ValueError("EMA weights of another shape")
                self.ema.state, self.ema.updates = saved["ema"], saved["ema_updates"]
            if saved.get("rng") is not None:
                _restore_rng(saved["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
            raise ConfigError(f"{path}: damaged training checkpoint ({type(exc).__name__}: {exc})") from None
        for name in COUNTERS:
            setattr(self, name, saved[name])
        return saved


def wrap(model: nn.Module, cfg: TrainConfig, world: World) -> nn.Module:
    """The model as the loop calls it: DistributedDataParallel across processes, then torch.compile."""
    if world.active:
        device = next(model.parameters()).device
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(model) if cfg.compile else model


def open_run(
    run_dir: Path, state: TrainState, cfg: TrainConfig, world: World, resume: bool, say: Callable[[str], None]
) -> list[dict]:
    """Start ``run_dir`` (config.json first), or with ``resume`` load its checkpoint into ``state``.

    Returns the metrics rows kept: those up to the checkpoint's epoch. Only rank 0 writes.
    """
    if world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / TRAIN_STATE_FILE
    if not (resume and path.exists()):
        if world.is_main:
            write_json(run_dir / CONFIG_FILE, cfg.to_dict())
            if resume:  # killed before the first checkpoint: start again, without a row it may have left
                write_text(run_dir / METRICS_FILE, "")
        return []
    saved = state.load(path, cfg)
    history = [r for r in read_jsonl(run_dir / METRICS_FILE) if r.get("epoch", 0) <= state.epoch]
    if world.is_main:
        write_text(run_dir / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in history))
        if saved["config"].get("epochs") != cfg.epochs:  # extended: a later resume goes on to it
            write_json(run_dir / CONFIG_FILE, cfg.to_dict())
    say(
        f"resuming {run_dir} after epoch {state.epoch}/{cfg.epochs} "
        f"(saved by {saved.get('world_size', 1)} process(es), now {world.size})"
    )
    return history


@contextmanager
def epoch_bar(show: bool, epoch: int, epochs: int, steps: int) -> Iterator[Progress | None]:
    """A tqdm bar on stderr for one epoch, fed by the loop's progress callback (None: no bar)."""
    if not show:
        yield None
        return
    bar = tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", file=sys.stderr, leave=False)

    def progress(done: int, loss: float, acc: float, ips: float) -> None:
        bar.n = done
        bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}", img_s=f"{ips:,.0f}")

    try:
        yield progress
    finally:
        bar.close()


def model_file(model: nn.Module, cfg: TrainConfig, data: TrainingData, row: dict) -> dict:
    """model.pt for the epoch of ``row``: ``model``'s weights and all predict / serve need to use them."""
    return model_record(
        model,
        arch=cfg.model,
        arch_kwargs=cfg.model_kwargs(),
        classes=data.classes,
        mean=data.mean,
        std=data.std,
        dataset=data.dataset,
        fingerprint=data.fingerprint,
        epoch=row["epoch"],
        config=cfg.to_dict(),
        metrics={k: row[k] for k in ("val_acc", "val_loss", "cum_train_time_s")},
    )


def best_model(
    run_dir: Path | None, cfg: TrainConfig, data: TrainingData, fallback: dict, world: World
) -> tuple[nn.Module, dict]:
    """The best epoch's model in eval mode (from model.pt when written) and model.pt's record.

    ``fallback``: the weights to use when there is no model.pt (the best epoch's, kept in memory).
    """
    if world.active:
        dist.barrier()  # rank 0 has written model.pt
    best, record = new_model(cfg, data), {}
    if run_dir is not None and (run_dir / MODEL_FILE).exists():
        record = load_record(run_dir / MODEL_FILE, map_location=data.train_x.device)
        _load_weights(best, record.pop("state_dict"), run_dir / MODEL_FILE)
    else:
        best.load_state_dict(fallback)
    return best.eval(), record


def _intro(cfg: TrainConfig, data: TrainingData, model: nn.Module, world: World) -> tuple[str, str]:
    split = f"; {world.size} processes, {cfg.batch_size // world.size} images each per step"
    return (
        f"model {cfg.model}: {param_count(model):,} parameters; "
        f"device {data.train_x.device}, {torch.get_num_threads()} threads",
        f"data {data.dataset} (fingerprint {data.fingerprint}): "
        f"{len(data.train_y):,} train / {len(data.val_y):,} val images{split if world.active else ''}",
    )


def _epoch_line(row: dict, epochs: int, improved: bool) -> str:
    return (
        f"epoch {row['epoch']:>3}/{epochs}  loss {row['train_loss']:.4f}  train {row['train_acc']:.4f}  "
        f"val {row['val_acc']:.4f}  {row['images_per_s']:,.0f} img/s  {row['train_time_s']:.1f}s"
        + ("  *" if improved else "")
    )


def _weights(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in unwrap(model).state_dict().items()}


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
    continues it. ``on_epoch_end(epoch, model, row)`` runs after each epoch outside the timed region (benchmarks
    use it to score time-to-accuracy); the model it gets is the one evaluated (EMA weights when enabled).
    """
    world = world or World()
    say = log if (log is not None and world.is_main) else (lambda _msg: None)
    if world.active and cfg.batch_size % world.size:
        raise ConfigError(f"--batch-size {cfg.batch_size} (global) must divide by the {world.size} processes")
    cfg = cfg.validate(quiet=True)  # a TrainConfig built in Python is checked before anything is allocated
    set_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    state = TrainState.start(cfg, data)
    scored = new_model(cfg, data) if state.ema else state.model  # with EMA: a copy given its weights
    net, plan = wrap(state.model, cfg, world), RunPlan.of(cfg, data, world)
    history = open_run(run_dir, state, cfg, world, resume, say) if run_dir is not None else []
    for line in _intro(cfg, data, state.model, world):
        say(line)
    show_bar = (sys.stderr.isatty() if progress_bar is None else progress_bar) and world.is_main
    writes, start, best_weights = run_dir is not None and world.is_main, state.epoch, None
    for epoch in range(start + 1, cfg.epochs + 1):
        with epoch_bar(show_bar, epoch, cfg.epochs, plan.steps_per_epoch) as progress:
            row = train_one_epoch(net, state, plan, progress)
        check_finite(row["train_loss"], state.model, epoch, cfg)
        if state.ema is not None:
            scored.load_state_dict(state.ema.state)
        row = {"epoch": epoch, **row, **evaluate(scored, data, cfg), "cum_train_time_s": state.train_time_s}
        improved = state.select(row["val_acc"])
        history.append(row)
        say(_epoch_line(row, cfg.epochs, improved))
        if writes:
            # The row goes before the checkpoint: a kill between the two re-runs this epoch and resume drops
            # the row (it keeps rows up to the checkpoint's epoch); the other order would lose the row.
            append_line(run_dir / METRICS_FILE, json.dumps(row))
            if improved:
                save(model_file(scored, cfg, data, row), run_dir / MODEL_FILE)
            state.save(run_dir / TRAIN_STATE_FILE, cfg, world.size)
        elif improved:
            best_weights = _weights(scored)
        if on_epoch_end is not None:
            on_epoch_end(epoch, scored, row)
        if stop_after is not None and epoch - start >= stop_after and epoch < cfg.epochs:
            say(f"stopping after {stop_after} epoch(s) as asked; continue with --resume")
            break
        if cfg.patience and state.stale >= cfg.patience:
            say(f"early stop: no better validation accuracy for {cfg.patience} epochs")
            break
    best, record = best_model(run_dir, cfg, data, best_weights or _weights(scored), world)
    return FitResult(best, history, state.best_epoch, state.best_val_acc, state.train_time_s, run_dir, record)


def train(cfg: TrainConfig, run_dir: Path | None, resume: bool = False, **kwargs) -> FitResult:
    """Load the data per ``cfg`` and ``fit``: the whole of ``fmnist train``."""
    cfg = cfg.validate()
    world = from_env()
    device = setup(world, resolve_device(cfg.device))
    board = None
    try:
        if run_dir is not None:
            cfg = check_run_dir(run_dir, cfg, resume)
        if world.active:
            dist.barrier()  # every rank checked the run folder before rank 0 writes into it
        data = load_training_data(cfg, device)
        board = TensorBoardLog.when(cfg, run_dir, world.is_main)  # --tensorboard: RUN_DIR/tensorboard
        if board is not None:
            kwargs["on_epoch_end"] = board.chain(kwargs.get("on_epoch_end"))
        result = fit(cfg, data, run_dir, resume=resume, world=world, **kwargs)
        if board is not None:
            board.confusion(result.model, data, cfg, result.best_epoch)
        if run_dir is not None and world.is_main and (run_dir / MODEL_FILE).exists():
            calibrate_run(result.model, data, cfg, run_dir, kwargs.get("log", print))
        return result
    finally:
        if board is not None:
            board.close()
        teardown(world)


def calibrate_run(
    model: nn.Module, data: TrainingData, cfg: TrainConfig, run_dir: Path, log: Callable[[str], None] | None
) -> Calibration | None:
    """Fit the temperature and abstain threshold on the validation split; write calibration.json beside
    model.pt (see :mod:`fmnist.models.calibration`). Without a validation split: nothing, and a note."""
    say = log or (lambda _msg: None)
    if len(data.val_y) == 0:
        say("note: no validation split, so no calibration.json: probabilities stay uncalibrated")
        return None
    logits = logits_of(
        model, data.val_x, data.mean, data.std, cfg.eval_batch_size, channels_last=cfg.channels_last
    )
    calibration = fit_on_validation(
        logits.cpu().numpy(), data.val_y.cpu().numpy(), model_digest(run_dir / MODEL_FILE)
    )
    write_calibration(run_dir, calibration)
    say(
        f"calibration: temperature {calibration.temperature:.3f} ({calibration.chosen_on['temperature']}); "
        f"{calibration.abstain_rule()}"
    )
    return calibration
