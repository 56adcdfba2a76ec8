"""Pick the device once: CUDA when present, else CPU; a bad request is one config-error line.

:func:`resolve_device` is the one place a ``--device`` value is parsed, for every command (train,
evaluate, predict, serve, bench, audit). Importing this module does not import torch, so a
command on the ONNX path can check a device name without it (:func:`check_device_name`).

Also which recipe fits the machine: the CPU presets come in two sizes, one for CPUs with native bf16
(AVX512-BF16 / AMX, where bf16 autocast doubles the speed) and one for AVX2-only CPUs (fp32).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from fmnist.errors import ConfigError

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that need it (see above); the recipe functions import the
# presets (fmnist.train.config imports this module) and the bf16 probe (torch) when called.
DEVICE_NAMES = "auto, cpu, cuda, cuda:N or mps"
_DEVICE = re.compile(r"(auto|cpu|cuda|cuda:[0-9]{1,3}|mps)\Z")


def check_device_name(name: str) -> str:
    """``name`` if it is one of auto, cpu, cuda, cuda:N, mps; otherwise one line (no torch needed).

    torch itself accepts many more (meta, xla, ipu, ...), on which nothing here can run: a model
    on ``meta`` loads, then fails on the first picture.
    """
    if not isinstance(name, str) or not _DEVICE.match(name):
        raise ConfigError(f"--device {name!r}: unknown device; use {DEVICE_NAMES}")
    return name


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda when present, else cpu; an explicit device must exist here, or one line."""
    import torch

    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {name}: no CUDA device here (torch sees no CUDA GPU); use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"--device {name}: no Apple MPS device here; use --device cpu")
    return device


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, else the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def set_threads(threads: int) -> int:
    """Use ``threads`` CPU threads (0: every core this process may run on)."""
    import torch

    torch.set_num_threads(max(1, threads or usable_cores()))
    return torch.get_num_threads()


def default_preset(device: torch.device) -> str:
    """The recipe ``fmnist run`` trains: gpu-fast on CUDA, else the CPU recipe sized for this CPU."""
    from fmnist.train.config import AVX2_TWIN
    from fmnist.train.loop import cpu_has_bf16

    if device.type == "cuda":
        return "gpu-fast"
    return "cpu-fast" if cpu_has_bf16() else AVX2_TWIN["cpu-fast"]


def preset_size_note(preset: str | None, device: torch.device, bf16: bool) -> str | None:
    """A one-line hint when a CPU preset sized for native bf16 runs where it will be ~2x slower."""
    from fmnist.train.config import AVX2_TWIN
    from fmnist.train.loop import cpu_has_bf16

    twin = AVX2_TWIN.get(preset or "")
    if twin is None or device.type != "cpu" or (bf16 and cpu_has_bf16()):
        return None
    why = "this CPU has no native bf16" if bf16 else "--no-bf16 trains in fp32"
    return f"note: preset {preset} is sized for CPUs with native bf16; {why}, so it runs about 2x slower (--preset {twin} is sized for fp32)"
