"""The peer we measure against: PyTorch training written the way the official tutorials do it.

A ``Dataset`` returning one image at a time with per-sample CPU transforms (random crop with
padding, horizontal flip, normalisation), a ``DataLoader`` with shuffling, fp32, Adam (tutorial
net) or SGD + cosine schedule (residual net). Nothing here is tuned for speed: that is the point.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from fmnist.models.registry import build_model


class FashionDataset(Dataset):
    """One (image, label) per index, transformed on the CPU per sample."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, train: bool) -> None:
        self.images, self.labels, self.train = images, labels, train

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(np.array(self.images[i], dtype=np.float32) / 255.0)[None]  # (1, 28, 28)
        if self.train:
            x = F.pad(x, (2, 2, 2, 2))
            top, left = random.randint(0, 4), random.randint(0, 4)
            x = x[:, top : top + 28, left : left + 28]
            if random.random() < 0.5:
                x = x.flip(2)
        return (x - 0.5) / 0.5, int(self.labels[i])


def train_reference(
    arch: str,
    images: np.ndarray,
    labels: np.ndarray,
    epochs: int,
    device: torch.device,
    seed: int = 0,
    on_epoch_end: Callable[[int, torch.nn.Module, float], None] | None = None,
    **arch_kwargs,
) -> dict:
    """Train the tutorial-style way; ``on_epoch_end(epoch, model, cum_train_time_s)`` runs untimed."""
    torch.manual_seed(seed)
    random.seed(seed)
    model = build_model(arch, **arch_kwargs).to(device)
    loader = DataLoader(
        FashionDataset(images, labels, train=True),
        batch_size=64,
        shuffle=True,
        num_workers=0,
        generator=torch.Generator().manual_seed(seed),
    )
    if arch == "tutorial":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        scheduler = None
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    cum, seen = 0.0, 0
    for epoch in range(1, epochs + 1):
        model.train()
        t0 = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(y)
        if scheduler is not None:
            scheduler.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        cum += time.perf_counter() - t0
        if on_epoch_end is not None:
            on_epoch_end(epoch, model, cum)
    return {"train_time_s": cum, "images_per_s": seen / max(cum, 1e-9), "model": model}


@torch.no_grad()
def reference_logits(model: torch.nn.Module, images: np.ndarray, device: torch.device) -> torch.Tensor:
    """Test logits with the reference's own normalisation."""
    model.eval()
    out = []
    for i in range(0, len(images), 1000):
        x = torch.from_numpy(np.array(images[i : i + 1000], dtype=np.float32) / 255.0)[:, None].to(device)
        out.append(model((x - 0.5) / 0.5).float().cpu())
    return torch.cat(out)
