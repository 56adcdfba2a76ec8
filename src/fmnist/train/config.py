"""The training job's one frozen config: every knob, its unit, its default; presets; validation.

Precedence: field defaults < ``--preset`` < ``--config FILE.toml`` < explicit command-line flags.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from fmnist.errors import ConfigError
from fmnist.models.catalog import CATALOG as MODELS


@dataclass(frozen=True)
class TrainConfig:
    # --- what to train
    model: str = "fastcnn"  # architecture name in fmnist.models.MODELS
    width: int | None = None  # model width knob (None: the model's default)
    depth: int | None = None  # residual blocks per stage (resnet only)
    dataset: str = "fashion"  # data set name: fashion | mnist
    data_dir: str | None = None  # folder with the four IDX files (None: cache / system copy / download)
    train_limit: int | None = None  # train on the first N training images only (smoke tests)
    val_size: int = 5000  # images held out of training, stratified, for model selection
    # --- optimisation
    epochs: int = 12  # passes over the training images
    batch_size: int = 128  # images per step
    optimizer: str = "sgd"  # sgd (Nesterov momentum) | adamw
    lr: float = 0.05  # peak learning rate (per batch of `batch_size`)
    momentum: float = 0.9  # SGD momentum / AdamW beta1
    weight_decay: float = 5e-4  # L2 on weights (not on BN / biases)
    warmup_epochs: float = 1.0  # linear warm-up from lr/10 to lr, in epochs
    schedule: str = "onecycle"  # onecycle (linear decay to 0) | cosine | constant
    label_smoothing: float = 0.1  # cross-entropy label smoothing
    ema_decay: float = 0.0  # weight EMA per step (0: off); evaluation uses the EMA weights
    # --- augmentation, done on the training device in whole batches
    crop_pad: int = 2  # random crop after zero padding by this many pixels (0: off)
    flip: bool = True  # random horizontal flip
    erase_p: float = 0.25  # probability of random erasing per image (0: off)
    # --- initialisation
    whiten: bool = False  # set the first conv from the PCA of training patches and freeze it
    # --- selection and stopping
    patience: int = 0  # stop after this many epochs without a better val accuracy (0: never)
    # --- machine
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch CPU threads (0: all cores)
    bf16: bool = True  # bf16 autocast on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX)
    channels_last: bool = True  # NHWC memory layout (faster on CPUs with oneDNN and on tensor cores)
    compile: bool = False  # torch.compile the model
    seed: int = 0  # seeds the split, initialisation, order and augmentation
    eval_batch_size: int = 1024  # images per evaluation step
    # --- bookkeeping
    preset: str | None = None  # the named preset this config started from, if any

    def model_kwargs(self) -> dict[str, Any]:
        """The architecture knobs this model takes, for ``build_model``."""
        knobs = MODELS[self.model].knobs
        return {
            k: getattr(self, k) for k in ("width", "depth") if k in knobs and getattr(self, k) is not None
        }

    def validate(self) -> TrainConfig:
        """Raise ConfigError with one line for a nonsense value; return self."""
        if self.model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r}; known: {', '.join(MODELS)}")
        for key in ("width", "depth"):
            value = getattr(self, key)
            if value is not None:
                if key not in MODELS[self.model].knobs:
                    raise ConfigError(f"model {self.model!r} takes no --{key}")
                if value < 1:
                    raise ConfigError(f"--{key} must be positive, got {value}")
        checks = [
            (self.epochs >= 1, f"--epochs must be positive, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be positive, got {self.batch_size}"),
            (self.eval_batch_size >= 1, f"--eval-batch-size must be positive, got {self.eval_batch_size}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.momentum < 1, f"--momentum must be in [0, 1), got {self.momentum}"),
            (self.warmup_epochs >= 0, f"--warmup-epochs must be >= 0, got {self.warmup_epochs}"),
            (
                0 <= self.label_smoothing < 1,
                f"--label-smoothing must be in [0, 1), got {self.label_smoothing}",
            ),
            (0 <= self.ema_decay < 1, f"--ema-decay must be in [0, 1), got {self.ema_decay}"),
            (0 <= self.erase_p <= 1, f"--erase-p must be in [0, 1], got {self.erase_p}"),
            (0 <= self.crop_pad <= 8, f"--crop-pad must be in 0..8, got {self.crop_pad}"),
            (self.val_size >= 0, f"--val-size must be >= 0, got {self.val_size}"),
            (self.patience >= 0, f"--patience must be >= 0, got {self.patience}"),
            (self.threads >= 0, f"--threads must be >= 0, got {self.threads}"),
            (
                self.train_limit is None or self.train_limit >= 20,
                f"--train-limit must be at least 20, got {self.train_limit}",
            ),
            (self.optimizer in ("sgd", "adamw"), f"--optimizer must be sgd or adamw, got {self.optimizer!r}"),
            (
                self.schedule in ("onecycle", "cosine", "constant"),
                f"--schedule must be onecycle, cosine or constant, got {self.schedule!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def format(self) -> str:
        """The config as aligned ``key = value`` lines, printed at the start of every run."""
        width = max(len(f.name) for f in fields(self))
        return "\n".join(f"  {f.name:<{width}} = {getattr(self, f.name)!r}" for f in fields(self))


# Named recipes: a README table row is one `--preset NAME`. Figures in benchmarks/RESULTS.md.
# The CPU recipes come in two sizes: `cpu-fast` / `cpu-60s` for CPUs with native bf16 (AVX512-BF16 or AMX:
# bf16 autocast, about twice the fp32 speed), `cpu-fast-avx2` / `cpu-60s-avx2` for AVX2-only CPUs (fp32).
# `fmnist run` picks the one that fits the machine; each was tuned on its kind of machine (benchmarks/NOTES.md).
_CPU_BASE: dict[str, Any] = {
    "model": "fastcnn",
    "batch_size": 256,
    "lr": 0.2,
    "crop_pad": 0,
    "erase_p": 0.0,
    "whiten": True,
}
PRESETS: dict[str, dict[str, Any]] = {
    # CPU default behind `make run` on a bf16 CPU: fastcnn width 24 (75k parameters), whitened frozen first
    # layer, 20 epochs, flips only; 3.5-4.5 minutes on two AMX cores (val 0.9450 against 0.9368 for the
    # width-16 AVX2 recipe on the same machine; width 32 x 16 epochs: 0.9452 in 244 s).
    "cpu-fast": {**_CPU_BASE, "width": 24, "epochs": 20, "warmup_epochs": 0.5},
    # A one-minute budget on a bf16 CPU: width 16, 6 epochs without augmentation, 30-40 s on two AMX cores
    # (val 0.9370 / 0.9310 for seeds 0 / 1; 8 epochs 0.9394 in 44 s, width 24 x 4 epochs 0.9372 in 43 s; half
    # the budget is left because this machine's speed swings by up to 2x from minute to minute).
    "cpu-60s": {**_CPU_BASE, "width": 16, "epochs": 6, "warmup_epochs": 0.3, "flip": False},
    # The AVX2 (fp32) twin of cpu-fast: width 16, 16 epochs, about 4 minutes on two AVX2 cores. Width 16 is the
    # cheapest width per image on oneDNN/AVX2 (3,200 train / 11,500 inference img/s); crop slowed learning at
    # this length, whitening sped it up (val 0.9428 against 0.9350 without).
    "cpu-fast-avx2": {**_CPU_BASE, "width": 16, "epochs": 16, "warmup_epochs": 0.5},
    # The AVX2 twin of cpu-60s: width 16, 3 epochs without augmentation (val 0.9318 in 47 s on two AVX2
    # cores; 0.9248 without whitening, 0.912 with crop and flip).
    "cpu-60s-avx2": {**_CPU_BASE, "width": 16, "epochs": 3, "warmup_epochs": 0.3, "flip": False},
    # The README table's tutorial net, trained the plain way (no BN, no augmentation tricks).
    "tutorial": {
        "model": "tutorial",
        "epochs": 15,
        "batch_size": 128,
        "optimizer": "adamw",
        "lr": 1e-3,
        "weight_decay": 0.0,
        "label_smoothing": 0.0,
        "crop_pad": 0,
        "flip": False,
        "erase_p": 0.0,
        "warmup_epochs": 0.0,
        "schedule": "cosine",
    },
    # GPU recipes (measured on an H200 by benchmarks/gpu_bench.sh when one is lent).
    "gpu-fast": {"model": "resnet", "width": 32, "depth": 1, "epochs": 10, "batch_size": 512, "lr": 0.2},
    "gpu-best": {
        "model": "resnet",
        "width": 96,
        "depth": 2,
        "epochs": 60,
        "batch_size": 256,
        "lr": 0.1,
        "erase_p": 0.5,
        "ema_decay": 0.999,
    },
}


# The fp32-sized recipe to suggest when a bf16-sized one runs on a CPU without native bf16.
AVX2_TWIN = {"cpu-fast": "cpu-fast-avx2", "cpu-60s": "cpu-60s-avx2"}


def read_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed file is a one-line ConfigError."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid TOML file ({exc})") from None


def load_toml(path: str | Path) -> dict[str, Any]:
    data = read_toml(path)
    data = data.get("train", data)  # accept a [train] table or top-level keys
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: 'train' must be a table of config keys, not a {type(data).__name__}")
    return data


def make_config(
    preset: str | None = None, toml_path: str | Path | None = None, **overrides: Any
) -> TrainConfig:
    """Merge defaults < preset < TOML < overrides (None values are ignored) and validate."""
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        values.update(PRESETS[preset])
        values["preset"] = preset
    if toml_path is not None:
        values.update(load_toml(toml_path))
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
    try:
        config = TrainConfig(**values)
    except TypeError as exc:
        raise ConfigError(f"bad config: {exc}") from None
    for f in fields(TrainConfig):
        value = getattr(config, f.name)
        expected = {"int": int, "float": (int, float), "bool": bool, "str": str}.get(
            str(f.type).split(" ")[0]
        )
        if (
            value is not None
            and expected is not None
            and (not isinstance(value, expected) or (expected is int and isinstance(value, bool)))
        ):
            raise ConfigError(f"config key {f.name!r} must be {str(f.type).split(' ')[0]}, got {value!r}")
    return config.validate()
