"""One training epoch and one evaluation pass: plain functions, arguments passed in."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from fmnist.models.checkpoint import unwrap
from fmnist.train.augment import random_crop, random_erase, random_flip


def lr_at(step: int, total_steps: int, peak: float, warmup_steps: int, schedule: str) -> float:
    """The learning rate at ``step``: linear warm-up from peak/10, then the schedule down to 0."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak * (0.1 + 0.9 * step / warmup_steps)
    if schedule == "constant":
        return peak
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "cosine":
        return peak * 0.5 * (1 + math.cos(math.pi * progress))
    return peak * (1 - progress)  # onecycle: linear decay to zero


def cpu_has_bf16() -> bool:
    """True on CPUs with native bf16 (AVX512-BF16 or AMX), where oneDNN runs bf16 convs ~1.7x faster."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_for(device: torch.device, bf16: bool):
    """bf16 autocast on CUDA and on CPUs with native bf16; a no-op elsewhere (one code path)."""
    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if bf16 and device.type == "cpu" and cpu_has_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


def normalise(x_uint8: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    return (x_uint8.float().div_(255) - mean) / std


class EMA:
    """Exponential moving average of the weights (buffers copied), with a short warm-up."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.state[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.state[k].copy_(v)


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data,  # TrainingData
    cfg,  # TrainConfig
    epoch: int,
    step: int,
    total_steps: int,
    warmup_steps: int,
    ema: EMA | None = None,
    progress: Callable[[int, float, float, float], None] | None = None,
    world=None,  # distributed.World: this rank trains on its slice of every global batch
) -> dict:
    """Train one epoch; randomness comes from (seed, epoch, rank) alone so a resumed run repeats it."""
    from fmnist.train.distributed import World, sum_across

    world = world or World()
    device = data.train_x.device
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 100_003 + epoch)
    torch.manual_seed(cfg.seed * 100_003 + epoch + 7919 * world.rank)  # dropout: the global generator
    n = len(data.train_y)
    bs = min(cfg.batch_size, n)
    steps = n // bs
    perm = torch.randperm(n, device=device, generator=gen)  # the same on every rank
    if world.active:  # augmentation differs per rank; the permutation must not
        aug_gen = torch.Generator(device=device).manual_seed(cfg.seed * 100_003 + epoch + 7919 * world.rank)
    else:
        aug_gen = gen
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    t0 = time.perf_counter()
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    for i in range(steps):
        lr = lr_at(step, total_steps, cfg.lr, warmup_steps, cfg.schedule)
        for group in optimizer.param_groups:
            group["lr"] = lr
        idx = perm[i * bs : (i + 1) * bs][world.rank :: world.size]  # this rank's slice
        x = data.train_x[idx].float().div_(255)  # (b, 1, 28, 28) in [0, 1], black background
        if cfg.crop_pad:
            x = random_crop(x, cfg.crop_pad, aug_gen)
        if cfg.flip:
            x = random_flip(x, aug_gen)
        x = (x - data.mean) / data.std
        if cfg.erase_p:
            x = random_erase(x, cfg.erase_p, aug_gen)
        x = x.contiguous(memory_format=memory_format)
        y = data.train_y[idx]
        with autocast_for(device, cfg.bf16):
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update(unwrap(model))
        step += 1
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        if progress is not None and (i % 20 == 19 or i == steps - 1):
            elapsed = time.perf_counter() - t0
            progress(i + 1, loss_sum.item() / seen, correct.item() / seen, seen / max(elapsed, 1e-9))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - t0
    loss_sum, correct, seen_t = sum_across(
        world, loss_sum, correct.double(), torch.tensor(float(seen), device=device)
    )
    seen = int(seen_t.item())
    return {
        "train_loss": loss_sum.item() / max(seen, 1),
        "train_acc": correct.item() / max(seen, 1),
        "lr": lr_at(step, total_steps, cfg.lr, warmup_steps, cfg.schedule),
        "train_time_s": elapsed,
        "images_per_s": seen / max(elapsed, 1e-9),
        "step": step,
    }


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    x_uint8: torch.Tensor,
    mean: float,
    std: float,
    batch_size: int = 1024,
    bf16: bool = False,
    channels_last: bool = True,
) -> torch.Tensor:
    """Logits (n, classes) as float32 for uint8 images (n, 1, 28, 28), in eval mode.

    fp32 by default, as ``fmnist evaluate`` / predict / serve score: model selection then sees the
    same numbers the saved model gives. ``bf16=True`` is for throughput measurements.
    """
    model.eval()
    device = x_uint8.device
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    outs = []
    for i in range(0, len(x_uint8), batch_size):
        x = normalise(x_uint8[i : i + batch_size], mean, std).contiguous(memory_format=memory_format)
        with autocast_for(device, bf16):
            outs.append(model(x).float())
    return torch.cat(outs) if outs else torch.empty(0, 10, device=device)


def accuracy_and_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    if len(labels) == 0:
        return float("nan"), float("nan")
    acc = (logits.argmax(1) == labels).float().mean().item()
    loss = F.cross_entropy(logits, labels).item()
    return acc, loss
