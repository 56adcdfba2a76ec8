"""Batch augmentation on the training device: random crop with padding, flip, random erasing.

Each function takes a float batch (n, 1, H, W) and a torch.Generator on the same device, so the
whole epoch's randomness is fixed by (seed, epoch) and a resumed run repeats it exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``pad`` and cut a random HxW window per image (one gather, no Python loop)."""
    if pad <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), device=x.device, generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), device=x.device, generator=gen)
    rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None])[:, None, :, None]  # (n,1,h,1)
    cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None])[:, None, None, :]  # (n,1,1,w)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mirror left-right with probability 1/2 per image."""
    mask = torch.rand(x.shape[0], device=x.device, generator=gen) < 0.5
    return torch.where(mask[:, None, None, None], x.flip(3), x)


def random_erase(
    x: torch.Tensor,
    p: float,
    gen: torch.Generator,
    area: tuple[float, float] = (0.02, 0.25),
    ratio: tuple[float, float] = (0.3, 3.3),
) -> torch.Tensor:
    """Zero a random rectangle (area fraction and aspect ratio drawn per image) with probability p."""
    if p <= 0:
        return x
    n, _, h, w = x.shape
    dev = x.device
    frac = torch.empty(n, device=dev).uniform_(*area, generator=gen)
    log_r = torch.empty(n, device=dev).uniform_(
        torch.log(torch.tensor(ratio[0])).item(), torch.log(torch.tensor(ratio[1])).item(), generator=gen
    )
    aspect = torch.exp(log_r)
    eh = torch.sqrt(frac * h * w * aspect).round().clamp(1, h)
    ew = torch.sqrt(frac * h * w / aspect).round().clamp(1, w)
    y0 = (torch.rand(n, device=dev, generator=gen) * (h - eh + 1)).floor()
    x0 = (torch.rand(n, device=dev, generator=gen) * (w - ew + 1)).floor()
    apply = torch.rand(n, device=dev, generator=gen) < p
    ys = torch.arange(h, device=dev)[None, :]
    xs = torch.arange(w, device=dev)[None, :]
    in_y = (ys >= y0[:, None]) & (ys < (y0 + eh)[:, None])  # (n, h)
    in_x = (xs >= x0[:, None]) & (xs < (x0 + ew)[:, None])  # (n, w)
    mask = (in_y[:, :, None] & in_x[:, None, :] & apply[:, None, None])[:, None]  # (n,1,h,w)
    return x.masked_fill(mask, 0.0)
