"""Pick the training device once: CUDA when present, else CPU; a bad request is a config error.

Also which recipe fits the machine: the CPU presets come in two sizes, one for CPUs with native bf16
(AVX512-BF16 / AMX, where bf16 autocast doubles the speed) and one for AVX2-only CPUs (fp32).
"""

from __future__ import annotations

import os

import torch

from fmnist.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda asked for, but no CUDA GPU is available here (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type != "cpu":
        raise ConfigError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    return device


def set_threads(threads: int) -> int:
    """Use ``threads`` CPU threads (0: every core this process may run on)."""
    if threads:
        n = threads
    elif hasattr(os, "sched_getaffinity"):
        n = len(os.sched_getaffinity(0))
    else:
        n = os.cpu_count() or 1
    torch.set_num_threads(max(1, n))
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
