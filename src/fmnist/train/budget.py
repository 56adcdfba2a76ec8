"""Will a training run fit in memory? An estimate made before anything real is allocated.

The model is built on the ``meta`` device (shapes only, no storage) and run forward on a meta batch
of shape (batch, 1, 28, 28) in training mode: ``saved_tensors_hooks`` see every tensor autograd keeps
for the backward pass, and forward hooks see every module's output. From those and the parameter count:

- weights: the model, its gradients, the optimiser's state (SGD momentum: 1 copy, AdamW: 2), the EMA
  copy and its evaluation model when ``ema_decay`` > 0, and one more copy for the best model / the
  checkpoint written every epoch;
- one training step: the activations kept for backward, and as much again during backward for the
  gradients flowing back through them (and the allocator's slack: freed activations and new gradients
  differ in size, so freed memory is not always reused at once);
- one evaluation step (no autograd): the two largest activations at ``eval_batch_size``;
- the training images held on the device (uint8), plus their float copy when mean/std are computed.

Activations are counted in float32 even where bf16 autocast would halve some of them: an upper-side
estimate. The total is compared with the memory free on the training device (``MemAvailable`` and the
cgroup limit on CPU, ``torch.cuda.mem_get_info`` on CUDA).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from fmnist.data.registry import DATASETS
from fmnist.errors import ConfigError
from fmnist.models.registry import build_from_config

GiB = 2**30
IMAGE_PIXELS = 28 * 28


@dataclass(frozen=True)
class MemoryEstimate:
    params: int
    weight_bytes: int  # weights, gradients, optimiser state, EMA and best-model copies
    step_bytes: int  # one training step's activations (kept for backward + backward transients)
    eval_bytes: int  # one evaluation step's activations
    data_bytes: int  # the training images on the device

    @property
    def total(self) -> int:
        return self.weight_bytes + max(self.step_bytes, self.eval_bytes) + self.data_bytes


def weight_copies(cfg) -> int:
    """How many parameter-sized tensors training holds at once."""
    optimiser = 2 if cfg.optimizer == "adamw" else (1 if cfg.momentum > 0 else 0)
    ema = 2 if cfg.ema_decay > 0 else 0  # the EMA state and the model it is evaluated in
    return 1 + 1 + optimiser + ema + 1  # weights, grads, optimiser, EMA, best model / checkpoint


def activation_bytes(cfg, num_classes: int = 10) -> tuple[int, int, int]:
    """(parameters, bytes kept for backward at ``batch_size``, bytes of the largest module output per image)."""
    with torch.device("meta"):
        model = build_from_config(cfg, num_classes)
    params = sum(p.numel() for p in model.parameters())
    param_ids = {id(p) for p in model.parameters()}
    saved: dict[int, int] = {}  # id -> bytes: a tensor saved by several ops counts once
    largest = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in param_ids:
            saved[id(t)] = t.numel() * 4  # float32 whatever the meta dtype
        return t

    def on_output(_module, _inputs, output) -> None:
        nonlocal largest
        if isinstance(output, torch.Tensor):
            largest = max(largest, output.numel() * 4)

    handles = [m.register_forward_hook(on_output) for m in model.modules()]
    x = torch.empty(cfg.batch_size, 1, 28, 28, device="meta")
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model.train()(x)
    finally:
        for h in handles:
            h.remove()
    return params, sum(saved.values()), largest // cfg.batch_size


def estimate(cfg, num_classes: int | None = None) -> MemoryEstimate:
    """The training memory of ``cfg`` (see the module docstring for what is counted)."""
    spec = DATASETS.get(cfg.dataset)
    if num_classes is None:
        num_classes = len(spec.classes) if spec is not None else 10
    params, saved, largest_per_image = activation_bytes(cfg, num_classes)
    n_train = spec.counts.get("train", 60_000) if spec is not None else 60_000
    if cfg.train_limit is not None:
        n_train = min(n_train, cfg.train_limit)
    batch_input = cfg.batch_size * IMAGE_PIXELS * 4
    return MemoryEstimate(
        params=params,
        weight_bytes=params * 4 * weight_copies(cfg),
        step_bytes=2 * saved + batch_input,
        eval_bytes=2 * largest_per_image * cfg.eval_batch_size + cfg.eval_batch_size * IMAGE_PIXELS * 4,
        data_bytes=n_train * (IMAGE_PIXELS * (1 + 4) + 8),
    )


def estimate_training_bytes(cfg, num_classes: int | None = None) -> int:
    """Bytes a training run of ``cfg`` needs at its peak (an estimate, float32 activations)."""
    return estimate(cfg, num_classes).total


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def cpu_available_bytes() -> int | None:
    """Memory a new allocation can get: MemAvailable, or less under a cgroup (container) limit."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    limit, used = _read_int("/sys/fs/cgroup/memory.max"), _read_int("/sys/fs/cgroup/memory.current")
    if limit is not None and used is not None:
        room = max(0, limit - used)
        available = room if available is None else min(available, room)
    return available


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` (None where it cannot be told)."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    if device.type == "cpu":
        return cpu_available_bytes()
    return None


def training_device(cfg) -> torch.device | None:
    """The device ``cfg`` trains on, if it can be told here (a CUDA name without CUDA: None)."""
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(cfg.device)
    except RuntimeError:
        return None
    if device.type == "cuda" and not torch.cuda.is_available():
        return None  # the trainer refuses it with its own message
    return device if device.type in ("cpu", "cuda") else None


def check_fits(cfg, num_classes: int | None = None) -> MemoryEstimate:
    """Refuse ``cfg`` with one line (the estimate, what is free) when it cannot fit; return the estimate."""
    found = estimate(cfg, num_classes)
    device = training_device(cfg)
    free = available_bytes(device) if device is not None else None
    if free is not None and found.total > free:
        knobs = ", ".join(f"{k} {v}" for k, v in cfg.model_kwargs().items())
        if found.step_bytes >= found.eval_bytes:
            activations = f"{found.step_bytes / GiB:.1f} GiB of activations at --batch-size {cfg.batch_size}"
        else:
            activations = (
                f"{found.eval_bytes / GiB:.1f} GiB of activations at --eval-batch-size {cfg.eval_batch_size}"
            )
        raise ConfigError(
            f"model {cfg.model}{' (' + knobs + ')' if knobs else ''} needs about {found.total / GiB:.1f} GiB "
            f"to train ({found.params:,} parameters: {found.weight_bytes / GiB:.1f} GiB of weights, gradients "
            f"and optimiser state; {activations}), more than the {free / GiB:.1f} GiB free on {device}; "
            "choose a smaller --width, --depth or batch size"
        )
    return found
