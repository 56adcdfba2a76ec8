"""The training job's one frozen config: every knob, its unit, its default, its range; presets; validation.

Precedence: field defaults < ``--preset`` < ``--config FILE.toml`` < explicit command-line flags.

Each field carries its help text and its allowed range in ``metadata`` (the ``--help`` of ``fmnist train``
and the checks are read from there), and its type in the annotation. A config is checked when it is built
(``TrainConfig(...)``, from the CLI, TOML, a resumed config.json or the Python API): a wrong type, a
non-finite number or a value out of range is a one-line :class:`ConfigError`. :meth:`TrainConfig.validate`
adds the checks that depend on the machine (threads capped at the cores, the model must fit in memory).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import sys
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fmnist.cli import DEVICE_HELP, data_dir_help
from fmnist.data.registry import DATASETS
from fmnist.errors import ConfigError
from fmnist.models.catalog import CATALOG as MODELS
from fmnist.train.device import check_device_name, usable_cores

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant")
SEED_LIMIT = 2**32  # numpy's seeds are 32-bit: seed in [0, 2**32)
MAX_LR = 10.0  # far above any useful peak rate (the recipes use 1e-3..0.2); 1e30 trains to NaN


def knob(
    default: Any,
    help: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> Any:
    """A config field: its default, its ``--help`` text (units included) and its range [lo, hi].

    ``lo_open`` / ``hi_open`` make a bound exclusive. Numbers must also be finite.
    """
    return field(
        default=default,
        metadata={"help": help, "lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open},
    )


@dataclass(frozen=True)
class TrainConfig:
    # --- what to train
    model: str = knob("fastcnn", "architecture name in fmnist.models.MODELS")
    width: int | None = knob(None, "model width knob (None: the model's default)", lo=1, hi=16384)
    depth: int | None = knob(
        None, "resnet: residual blocks per stage; fastcnn: conv layers at 7x7 (default 1)", lo=1, hi=100
    )
    dataset: str = knob("fashion", "data set name: fashion | mnist")
    data_dir: str | None = knob(None, data_dir_help())
    train_limit: int | None = knob(
        None, "train on the first N training images only (smoke tests)", lo=20, hi=10_000_000
    )
    val_size: int = knob(
        5000, "images held out of training, stratified, for model selection", lo=0, hi=10_000_000
    )
    # --- optimisation
    epochs: int = knob(12, "passes over the training images", lo=1, hi=10_000)
    batch_size: int = knob(128, "images per step", lo=1, hi=65_536)
    optimizer: str = knob("sgd", "sgd (Nesterov momentum) | adamw")
    lr: float = knob(0.05, "peak learning rate (per batch of `batch_size`)", lo=0, hi=MAX_LR, lo_open=True)
    momentum: float = knob(0.9, "SGD momentum / AdamW beta1", lo=0, hi=1, hi_open=True)
    weight_decay: float = knob(5e-4, "L2 on weights (not on BN / biases)", lo=0, hi=1, hi_open=True)
    # warmup_epochs is also at most `epochs` (checked in _check)
    warmup_epochs: float = knob(1.0, "linear warm-up from lr/10 to lr, in epochs", lo=0)
    schedule: str = knob("onecycle", "onecycle (linear decay to 0) | cosine | constant")
    label_smoothing: float = knob(0.1, "cross-entropy label smoothing", lo=0, hi=1, hi_open=True)
    ema_decay: float = knob(
        0.0, "weight EMA per step (0: off); evaluation uses the EMA weights", lo=0, hi=1, hi_open=True
    )
    # --- augmentation, done on the training device in whole batches
    crop_pad: int = knob(2, "random crop after zero padding by this many pixels (0: off)", lo=0, hi=8)
    flip: bool = knob(True, "random horizontal flip")
    erase_p: float = knob(0.25, "probability of random erasing per image (0: off)", lo=0, hi=1)
    outlier_exposure: float = knob(
        0.0,
        "weight of the loss that teaches 'none of the ten' on garment parts made from each batch (shorts from "
        "trousers, skirts from dresses; see fmnist.train.augment.none_of_the_ten); 0: off",
        lo=0,
        hi=10,
    )
    photo_aug: float = knob(
        0.0,
        "probability per image of photo-style augmentation: pose, light, shading, blur, noise, JPEG, "
        "backdrop (0: off; see fmnist.train.augment.photo_style)",
        lo=0,
        hi=1,
    )
    pair_aug: float = knob(
        0.0,
        "probability per footwear image of showing it as a pair (two copies, side by side or one behind the "
        "other, turned), as photos show shoes (0: off; see fmnist.train.augment.footwear_pairs)",
        lo=0,
        hi=1,
    )
    # --- initialisation
    whiten: bool = knob(False, "set the first conv from the PCA of training patches and freeze it")
    # --- selection and stopping
    patience: int = knob(
        0, "stop after this many epochs without a better val accuracy (0: never)", lo=0, hi=10_000
    )
    # --- machine
    device: str = knob("auto", DEVICE_HELP)
    # more threads than cores is capped (with a note) by validate()
    threads: int = knob(0, "torch CPU threads (0: all cores)", lo=0)
    bf16: bool = knob(True, "bf16 autocast on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX)")
    channels_last: bool = knob(True, "NHWC memory layout (faster on CPUs with oneDNN and on tensor cores)")
    compile: bool = knob(False, "torch.compile the model")
    seed: int = knob(
        0, "seeds the split, initialisation, order and augmentation", lo=0, hi=SEED_LIMIT, hi_open=True
    )
    eval_batch_size: int = knob(1024, "images per evaluation step", lo=1, hi=65_536)
    # --- bookkeeping
    tensorboard: bool = knob(
        False,
        "write TensorBoard event files to RUN_DIR/tensorboard (needs: pip install 'fmnist[tensorboard]')",
    )
    preset: str | None = knob(None, "the named preset this config started from, if any")

    def __post_init__(self) -> None:
        self._check()

    def model_kwargs(self) -> dict[str, Any]:
        """The architecture knobs this model takes, for ``build_model``."""
        knobs = MODELS[self.model].knobs
        return {
            k: getattr(self, k) for k in ("width", "depth") if k in knobs and getattr(self, k) is not None
        }

    def _check(self) -> None:
        """Types, finiteness, ranges and choices: one-line ConfigError for the first bad field.

        Runs on every construction. Numbers are normalised to plain Python (an int given for a float
        field becomes a float; numpy scalars become int / float), so config.json stays plain JSON.
        """
        types_ = field_types()
        for f in fields(self):
            value = getattr(self, f.name)
            kind, optional = types_[f.name]
            if value is None and optional:
                continue
            normal = _coerce(f.name, kind, value, optional)
            if normal is not value:
                object.__setattr__(self, f.name, normal)
            if kind in (int, float):
                _check_range(f, normal, kind)
        if self.model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r}; known: {', '.join(MODELS)}")
        for key in ("width", "depth"):
            if getattr(self, key) is not None and key not in MODELS[self.model].knobs:
                raise ConfigError(f"model {self.model!r} takes no --{key}")
        if self.dataset not in DATASETS:
            raise ConfigError(f"unknown data set {self.dataset!r}; known: {', '.join(DATASETS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"--optimizer must be sgd or adamw, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"--schedule must be onecycle, cosine or constant, got {self.schedule!r}")
        if self.warmup_epochs > self.epochs:
            raise ConfigError(
                f"--warmup-epochs must be at most --epochs ({self.epochs}), got {self.warmup_epochs}"
            )
        check_device_name(self.device)

    def validate(self, quiet: bool = False) -> TrainConfig:
        """Check what depends on this machine; return the config to run.

        ``threads`` above the cores this process may use is capped at them (a one-line note on stderr
        unless ``quiet``); a model whose estimated training memory exceeds what is free on its device is
        refused, with the estimate, before anything is allocated (:mod:`fmnist.train.budget`);
        ``tensorboard`` without the ``tensorboard`` package is refused too.
        """
        self._check()
        config = self
        cores = usable_cores()
        if self.threads > cores:
            if not quiet:
                print(
                    f"note: --threads {self.threads} capped at {cores}, the CPU cores this process may use",
                    file=sys.stderr,
                )
            config = dataclasses.replace(self, threads=cores)
        # here: the memory check needs torch, and `fmnist --help` imports this module
        from fmnist.train.budget import check_fits

        if self.tensorboard:  # a missing package is one line before anything is loaded or trained
            from fmnist.train.tensorboard import require_tensorboard

            require_tensorboard()

        check_fits(config)
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def format(self) -> str:
        """The config as aligned ``key = value`` lines, printed at the start of every run."""
        width = max(len(f.name) for f in fields(self))
        return "\n".join(f"  {f.name:<{width}} = {getattr(self, f.name)!r}" for f in fields(self))


@functools.cache
def field_types() -> dict[str, tuple[type, bool]]:
    """Each field's base type and whether None is allowed, from the annotations (``int | None`` -> int, True)."""
    out = {}
    for name, hint in typing.get_type_hints(TrainConfig).items():
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        base = [a for a in args if a is not type(None)]
        if len(base) != 1 or base[0] not in (int, float, bool, str):
            raise TypeError(f"TrainConfig.{name}: unsupported annotation {hint}")  # a bug, not user input
        out[name] = (base[0], len(base) < len(args))
    return out


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _coerce(name: str, kind: type, value: Any, optional: bool) -> Any:
    """``value`` as a plain ``kind``, or a one-line ConfigError. A bool is not a number; an int is a float."""
    wanted = kind.__name__ + (" or None" if optional else "")
    bad = ConfigError(f"config key {name!r} must be {wanted}, got {value!r}")
    if kind is bool:
        if type(value) is bool:
            return value
        if type(value).__name__ == "bool_":  # numpy.bool_
            return bool(value)
        raise bad
    if kind is str:
        if isinstance(value, str):
            return value
        if name == "data_dir" and isinstance(value, os.PathLike):
            return os.fspath(value)
        raise bad
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        raise bad
    if kind is int:
        if type(value) is int:
            return value
        if isinstance(value, numbers.Integral):
            return int(value)
        raise bad
    if isinstance(value, numbers.Real):  # float field: int, float, numpy scalars
        return value if type(value) is float else float(value)
    raise bad


def _check_range(f: dataclasses.Field, value: float, kind: type) -> None:
    """Finite and within the field's [lo, hi] (bounds from its metadata)."""
    if not math.isfinite(value):
        raise ConfigError(f"{flag(f.name)} must be a finite number, got {value}")
    lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
    lo_open, hi_open = f.metadata.get("lo_open", False), f.metadata.get("hi_open", False)
    too_low = lo is not None and (value <= lo if lo_open else value < lo)
    too_high = hi is not None and (value >= hi if hi_open else value > hi)
    if too_low or too_high:
        text = _range_text(lo, hi, lo_open, hi_open, kind is int)
        raise ConfigError(f"{flag(f.name)} must be {text}, got {value}")


def _range_text(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool, is_int: bool) -> str:
    """The range in words: 'positive and at most 10', '>= 0', 'in [0, 1)', 'in 0..8', 'at least 20'."""

    def num(v: float) -> str:
        return str(v) if isinstance(v, int) else f"{v:g}"

    if lo == 0 and hi is not None and not lo_open:  # an interval from 0
        if is_int:
            return f"in 0..{num(hi - 1 if hi_open else hi)}"
        return f"in [0, {num(hi)}{')' if hi_open else ']'}"
    if (lo == 0 and lo_open) or (is_int and lo == 1):
        low = "positive"
    elif lo == 0:
        low = ">= 0"
    elif lo is not None:
        low = f"{'above' if lo_open else 'at least'} {num(lo)}"
    else:
        low = ""
    high = "" if hi is None else f"{'below' if hi_open else 'at most'} {num(hi)}"
    return " and ".join(part for part in (low, high) if part)


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
# fastcnn width 24 with two convs at 7x7, light crop and erasing: the long bf16 recipes.
_DEEP_24: dict[str, Any] = {"width": 24, "depth": 2, "warmup_epochs": 0.5, "crop_pad": 1, "erase_p": 0.25}
# fastcnn width 16 with two convs at 7x7, no augmentation: the short bf16 recipes (cpu-60s, cpu-20s).
_SHORT_16: dict[str, Any] = {"width": 16, "depth": 2, "warmup_epochs": 0.3, "flip": False}
PRESETS: dict[str, dict[str, Any]] = {
    # The bf16 recipes of the second frontier step (issue #18; chosen on the validation split on machine D, AMD
    # Zen 5 with AVX512-BF16; benchmarks/NOTES.md): fastcnn with a second conv at 7x7 (depth 2), which gained a
    # point of val accuracy in short runs (w16 x 6 epochs: 0.9426 / 0.9428 / 0.9372 over seeds 0-2 against
    # 0.9318 for depth 1) and, with crop 1 and erasing against the over-fitting it brings, 0.3 in long ones.
    # `make run` on a bf16 CPU: width 24, depth 2 (158,290 parameters), 16 epochs, flips, crop 1, erasing 0.25:
    # about 3 minutes on two Zen 5 cores (val 0.9460), so that `make run` on a fresh clone stays under 5 minutes.
    "cpu-fast": {**_CPU_BASE, **_DEEP_24, "epochs": 16},
    # The five-minute budget: the same net and augmentation for 24 epochs (20 epochs: val 0.9480 in 207 s; 24:
    # 0.9500 in 251 s). 22 epochs left one seed one image short of 94% with flip TTA; with the cheaper random
    # crop, 24 epochs took 236-251 s on two Zen 5 cores (22 took 220-263 s before it; benchmarks/RESULTS.md).
    "cpu-best": {**_CPU_BASE, **_DEEP_24, "epochs": 24},
    # The one-minute budget: width 16, depth 2 (70,970 parameters), 6 epochs without augmentation, 30-40 s.
    # Trained on all 60,000 images (no validation split; the settings were chosen on one): with 5,000 held
    # out, seed 2 reached 92.74% test; on all 60,000 the seeds reached 93.13-93.43% in 32-34 s.
    "cpu-60s": {**_CPU_BASE, **_SHORT_16, "epochs": 6, "val_size": 0},
    # The 20-second budget: the same net for 3 epochs, 16-19 s (val 0.9348 / 0.9300 for seeds 0 / 1).
    "cpu-20s": {**_CPU_BASE, **_SHORT_16, "epochs": 3},
    # The first frontier step's bf16 recipes (tuned on machine C, Intel AMX), kept to measure the new ones against.
    "cpu-fast-v1": {**_CPU_BASE, "width": 24, "epochs": 20, "warmup_epochs": 0.5},
    "cpu-60s-v1": {**_CPU_BASE, "width": 16, "epochs": 6, "warmup_epochs": 0.3, "flip": False},
    # The AVX2 (fp32) twin of cpu-fast: width 16, 16 epochs, about 4 minutes on two AVX2 cores. Width 16 is the
    # cheapest width per image on oneDNN/AVX2 (3,200 train / 11,500 inference img/s); crop slowed learning at
    # this length, whitening sped it up (val 0.9428 against 0.9350 without).
    "cpu-fast-avx2": {**_CPU_BASE, "width": 16, "epochs": 16, "warmup_epochs": 0.5},
    # The AVX2 twin of cpu-60s: width 16, 3 epochs without augmentation (val 0.9318 in 47 s on two AVX2
    # cores; 0.9248 without whitening, 0.912 with crop and flip).
    "cpu-60s-avx2": {**_CPU_BASE, "width": 16, "epochs": 3, "warmup_epochs": 0.3, "flip": False},
    # The AVX2 twin of cpu-20s: width 16, one epoch (about 17 s at machine B's 3,200 training images/s; not yet
    # measured on an AVX2-only machine).
    "cpu-20s-avx2": {**_CPU_BASE, "width": 16, "epochs": 1, "warmup_epochs": 0.3, "flip": False},
    # For photos (benchmarks/RESULTS.md "Real photos", chosen on ../shared/photos, machine D): cpu-fast with footwear
    # shown as pairs (half the shoes), photo-style augmentation on 30% of the images and made-up none-of-the-ten
    # garments (shorts, skirts, parts, hats; outlier exposure, weight 0.5). Against cpu-fast (seed 0): top-1 on the
    # photos 66.7% vs 63.3% (seed 1: 62.8%), footwear 67% vs 32%, AUROC garments vs none-of-the-ten 0.785 vs 0.671.
    "photo": {
        **_CPU_BASE,
        **_DEEP_24,
        "epochs": 16,
        "pair_aug": 0.5,
        "photo_aug": 0.3,
        "outlier_exposure": 0.5,
    },
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
AVX2_TWIN = {
    "cpu-fast": "cpu-fast-avx2",
    "cpu-best": "cpu-fast-avx2",
    "cpu-60s": "cpu-60s-avx2",
    "cpu-20s": "cpu-20s-avx2",
}


def validation_size(val_size: int, n: int, limited: bool, n_classes: int = 10) -> int:
    """The validation split the trainer holds out of ``n`` images: ``val_size``, except on a --train-limit
    run where that would take half the images or more: then a tenth (at least one image per class)."""
    if limited and val_size >= n // 2:
        return max(n // 10, n_classes)
    return val_size


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
    """Merge defaults < preset < TOML < overrides (None values are ignored), check and validate.

    The result is the config to run: checked field by field, threads capped at the cores, the model's
    training memory within what is free (``TrainConfig.validate``).
    """
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
    return TrainConfig(**values).validate()
