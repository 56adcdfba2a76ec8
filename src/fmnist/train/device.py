"""Pick the training device once: CUDA when present, else CPU; a bad request is a config error."""

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
