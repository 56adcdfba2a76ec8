"""One training epoch and one evaluation pass: plain functions over a run's fixed parts and its state."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from fmnist.errors import ConfigError
from fmnist.models.inference import logits_of
from fmnist.models.inputs import standardise, to_unit
from fmnist.models.scoring import accuracy, correct
from fmnist.train.augment import (
    footwear_pairs,
    none_of_the_ten,
    photo_style,
    random_crop,
    random_erase,
    random_flip,
)
from fmnist.train.config import TrainConfig
from fmnist.train.data import TrainingData
from fmnist.train.distributed import World, sum_across

if TYPE_CHECKING:
    from fmnist.train.trainer import TrainState

OUTLIER_SHARE = 4  # with outlier exposure, one made-up none-of-the-ten picture per this many images
Progress = Callable[[int, float, float, float], None]  # (steps done, mean loss, accuracy, images/s)


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


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of one epoch's random draws on one process: a pure function of (seed, epoch, rank).

    Every epoch reseeds from this instead of carrying generator state over, so a run resumed after
    epoch k draws exactly what the uninterrupted run drew. The two primes keep the streams apart:
    100_003 spaces the seeds (two seeds never share a stream while ``epoch + 7919 * rank`` stays below
    it), and 7919 gives each data-parallel rank its own augmentation and dropout stream (distinct for
    runs shorter than 7919 epochs). Rank 0, and a single process, use ``seed * 100_003 + epoch``.
    """
    return seed * 100_003 + epoch + 7919 * rank


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


@dataclass(frozen=True)
class RunPlan:
    """What stays fixed through a run: config, data, processes and the step plan."""

    cfg: TrainConfig
    data: TrainingData
    world: World
    steps_per_epoch: int  # global batches per epoch (a last partial batch is dropped)
    total_steps: int
    warmup_steps: int

    @classmethod
    def of(cls, cfg: TrainConfig, data: TrainingData, world: World) -> RunPlan:
        n = len(data.train_y)
        per_epoch = max(1, n // min(cfg.batch_size, n))
        warmup = int(round(cfg.warmup_epochs * per_epoch))
        return cls(cfg, data, world, per_epoch, per_epoch * cfg.epochs, warmup)

    def lr(self, step: int) -> float:
        return lr_at(step, self.total_steps, self.cfg.lr, self.warmup_steps, self.cfg.schedule)


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def augment(
    images_uint8: torch.Tensor,
    cfg: TrainConfig,
    mean: float,
    std: float,
    gen,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """A training batch: footwear pairs, photo style, crop and flip in [0, 1] (pads are black), standardise,
    erase; in cfg's layout. ``labels`` are needed only for footwear pairs."""
    x = to_unit(images_uint8)  # (b, 1, 28, 28)
    if cfg.pair_aug and labels is not None:
        x = footwear_pairs(x, labels, cfg.pair_aug, gen)
    if cfg.photo_aug:
        x = photo_style(x, cfg.photo_aug, gen)
    if cfg.crop_pad:
        x = random_crop(x, cfg.crop_pad, gen)
    if cfg.flip:
        x = random_flip(x, gen)
    x = standardise(x, mean, std)
    if cfg.erase_p:
        x = random_erase(x, cfg.erase_p, gen)
    return x.contiguous(memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)


def outlier_batch(
    images_uint8: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig, mean: float, std: float, gen
) -> torch.Tensor:
    """Garments of none of the ten classes made from a batch (:func:`none_of_the_ten`), photo-styled and
    flipped like the rest, standardised, in cfg's layout."""
    x = none_of_the_ten(to_unit(images_uint8), labels, gen)
    if cfg.photo_aug:
        x = photo_style(x, cfg.photo_aug, gen)
    if cfg.flip:
        x = random_flip(x, gen)
    x = standardise(x, mean, std)
    return x.contiguous(memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)


def batch_loss(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, outliers: torch.Tensor | None, cfg: TrainConfig
):
    """(loss, logits of x): cross-entropy on the batch, plus ``cfg.outlier_exposure`` times the
    cross-entropy of the outliers against the uniform distribution (one forward pass for both)."""
    if outliers is None or len(outliers) == 0:
        logits = net(x)
        return F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing), logits
    both = net(torch.cat([x, outliers]))
    logits, out = both[: len(x)], both[len(x) :]
    uniform = -F.log_softmax(out.float(), dim=1).mean(dim=1).mean()
    return F.cross_entropy(
        logits, y, label_smoothing=cfg.label_smoothing
    ) + cfg.outlier_exposure * uniform, logits


def train_one_epoch(
    net: nn.Module, state: TrainState, run: RunPlan, progress: Progress | None = None
) -> dict:
    """Train epoch ``state.epoch + 1`` and advance ``state`` past it (epoch, step, training time).

    ``net`` is ``state.model`` as called (DDP- and/or torch.compile-wrapped). Each rank trains on its
    slice of every global batch; the epoch's figures are summed over ranks.
    """
    cfg, data, world = run.cfg, run.data, run.world
    epoch, device = state.epoch + 1, data.train_x.device
    gen = _generator(device, epoch_seed(cfg.seed, epoch))
    torch.manual_seed(epoch_seed(cfg.seed, epoch, world.rank))  # dropout: the global generator
    n = len(data.train_y)
    bs, steps = min(cfg.batch_size, n), run.steps_per_epoch
    perm = torch.randperm(n, device=device, generator=gen)  # the same on every rank
    # Augmentation differs per rank, the permutation must not; one process draws both from ``gen``.
    aug_gen = _generator(device, epoch_seed(cfg.seed, epoch, world.rank)) if world.active else gen
    net.train()
    loss_sum, hits = torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long)
    seen, t0 = 0, time.perf_counter()
    for i in range(steps):
        for group in state.optimizer.param_groups:
            group["lr"] = run.lr(state.step)
        idx = perm[i * bs : (i + 1) * bs][world.rank :: world.size]  # this rank's slice
        y = data.train_y[idx]
        x = augment(data.train_x[idx], cfg, data.mean, data.std, aug_gen, y)
        outliers = None
        if cfg.outlier_exposure:
            few = idx[: max(1, len(idx) // OUTLIER_SHARE)]
            outliers = outlier_batch(data.train_x[few], data.train_y[few], cfg, data.mean, data.std, aug_gen)
        with autocast_for(device, cfg.bf16):
            loss, logits = batch_loss(net, x, y, outliers, cfg)
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        if state.ema is not None:
            state.ema.update(state.model)
        state.step += 1
        loss_sum += loss.detach() * len(y)
        hits += correct(logits, y)
        seen += len(y)
        if progress is not None and (i % 20 == 19 or i == steps - 1):
            ips = seen / max(time.perf_counter() - t0, 1e-9)
            progress(i + 1, loss_sum.item() / seen, hits.item() / seen, ips)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - t0
    loss_sum, hits, seen_t = sum_across(
        world, loss_sum, hits.double(), torch.tensor(float(seen), device=device)
    )
    seen = int(seen_t.item())
    state.epoch, state.train_time_s = epoch, state.train_time_s + elapsed
    return {
        "train_loss": loss_sum.item() / max(seen, 1),
        "train_acc": hits.item() / max(seen, 1),
        "lr": run.lr(state.step),
        "train_time_s": elapsed,
        "images_per_s": seen / max(elapsed, 1e-9),
    }


def evaluate(model: nn.Module, data: TrainingData, cfg: TrainConfig) -> dict:
    """Validation accuracy and cross-entropy (NaN without a validation split), timed. fp32, as
    ``fmnist evaluate`` / predict / serve score, so model selection sees what the saved model gives."""
    t0 = time.perf_counter()
    logits = logits_of(
        model, data.val_x, data.mean, data.std, cfg.eval_batch_size, channels_last=cfg.channels_last
    )
    loss = F.cross_entropy(logits, data.val_y).item()  # the mean over no images is NaN, as accuracy's
    return {
        "val_acc": accuracy(logits, data.val_y),
        "val_loss": loss,
        "eval_time_s": time.perf_counter() - t0,
    }


def check_finite(train_loss: float, model: nn.Module, epoch: int, cfg: TrainConfig) -> None:
    """Stop a run whose loss or weights went NaN/inf, before anything of that epoch is saved.

    Called once per epoch: the loss is the epoch's mean (one number, already on the host), the
    weights cost one reduction and one sync. Once a step has produced NaN, SGD never recovers.
    """
    with torch.no_grad():
        weights_ok = bool(torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all())
    if not (math.isfinite(train_loss) and weights_ok):
        raise ConfigError(
            f"training diverged at epoch {epoch} (loss {train_loss:.4g}"
            + ("" if weights_ok else ", weights not finite")
            + f"); lower --lr (now {cfg.lr:g}) or add --warmup-epochs; the diverged weights were not saved"
        )


def predict_logits(
    model: nn.Module,
    x_uint8: torch.Tensor,
    mean: float,
    std: float,
    batch_size: int = 1024,
    bf16: bool = False,
    channels_last: bool = True,
    flip_tta: bool = False,
) -> torch.Tensor:
    """:func:`fmnist.models.inference.logits_of` under bf16 autocast when ``bf16`` (throughput figures)."""
    with autocast_for(x_uint8.device, bf16):
        return logits_of(
            model, x_uint8, mean, std, batch_size, flip_tta=flip_tta, channels_last=channels_last
        )
