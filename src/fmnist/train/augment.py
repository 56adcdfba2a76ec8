"""Batch augmentation on the training device: random crop with padding, flip, random erasing; for
photos, photo style, footwear pairs and made-up garments of none of the ten classes (outlier exposure).

Each function takes a float batch (n, 1, H, W) and a torch.Generator on the same device, so the
whole epoch's randomness is fixed by (seed, epoch) and a resumed run repeats it exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``pad`` and cut a random HxW window per image.

    One flat gather along each padded image (offset ``dy * W + dx`` added to the window's own indices):
    5-6 times faster on a CPU than 4-D advanced indexing (0.5 against 2.9 ms for 256 images, one thread),
    which was 5% of a ``cpu-best`` training step.
    """
    if pad <= 0:
        return x
    n, c, h, w = x.shape
    width = w + 2 * pad
    padded = F.pad(x, (pad, pad, pad, pad)).reshape(n, c, -1)
    dy = torch.randint(0, 2 * pad + 1, (n,), device=x.device, generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), device=x.device, generator=gen)
    window = torch.arange(h, device=x.device)[:, None] * width + torch.arange(w, device=x.device)[None, :]
    flat = window.reshape(1, 1, h * w) + (dy * width + dx).reshape(n, 1, 1)
    return padded.gather(2, flat.expand(n, c, h * w)).reshape(n, c, h, w)


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


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.empty(n, device=device).uniform_(lo, hi, generator=gen)


def _low_frequency(n: int, cells: int, size: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """(n, 1, size, size) smooth random fields in [0, 1]: a ``cells`` x ``cells`` grid upsampled bicubically."""
    coarse = torch.rand(n, 1, cells, cells, device=device, generator=gen)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def _affine(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Rotation (±15°), scale (0.85-1.05), aspect (0.85-1.18), shear (±0.1) and shift (±1.5 px) per image."""
    n, _, h, w = x.shape
    dev = x.device
    angle = _uniform(n, -15.0, 15.0, gen, dev) * math.pi / 180
    scale = _uniform(n, 0.85, 1.05, gen, dev)
    aspect = torch.exp(_uniform(n, math.log(0.85), math.log(1.18), gen, dev))
    shear = _uniform(n, -0.1, 0.1, gen, dev)
    shift = _uniform(2 * n, -1.5, 1.5, gen, dev).view(n, 2) * 2 / w
    cos, sin = torch.cos(angle), torch.sin(angle)
    # affine_grid maps output to input coordinates: the inverse of the garment's own motion
    sx, sy = 1 / (scale * aspect.sqrt()), aspect.sqrt() / scale
    theta = torch.stack(
        [
            torch.stack([cos * sx, -sin * sx + shear, shift[:, 0]], 1),
            torch.stack([sin * sy, cos * sy, shift[:, 1]], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _dct_matrix(size: int, device: torch.device) -> torch.Tensor:
    k = torch.arange(size, device=device, dtype=torch.float32)
    m = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * size)) * math.sqrt(2 / size)
    m[0] /= math.sqrt(2)
    return m  # orthonormal DCT-II: m @ block @ m.T


def _jpeg_like(x: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """8x8 blockwise DCT quantised with ``step`` (n,) per image, coarser for higher frequencies."""
    n, c, h, w = x.shape
    ph, pw = -h % 8, -w % 8
    padded = F.pad(x, (0, pw, 0, ph), mode="replicate")
    H, W = padded.shape[-2:]
    blocks = padded.view(n, c, H // 8, 8, W // 8, 8).permute(0, 1, 2, 4, 3, 5)  # (n,c,bh,bw,8,8)
    d = _dct_matrix(8, x.device)
    coeff = d @ blocks @ d.T
    freq = torch.arange(8, device=x.device, dtype=torch.float32)
    q = step.view(n, 1, 1, 1, 1, 1) * (1 + (freq[:, None] + freq[None, :]) / 4)
    restored = d.T @ (torch.round(coeff / q) * q) @ d
    return restored.permute(0, 1, 2, 4, 3, 5).reshape(n, c, H, W)[..., :h, :w]


def photo_style(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """What a real photo brings, on a [0, 1] batch (n, 1, H, W) of articles light on black; each image
    with probability ``p``.

    A photo of a garment on a bed, cut out and negated by ``fmnist predict``, differs from the data
    set's packshots in pose (rotation, scale, aspect, shear, shift), light (brightness, contrast, gamma,
    uneven shading across folds), optics (blur or over-sharpening, sensor noise, JPEG blocks) and in
    what is left of the background when the cut is imperfect: a gradient or texture composited behind
    the garment (its mask is its non-zero pixels). The result is stretched so its brightest pixel is 1,
    as the photo preprocessing does.
    """
    if p <= 0:
        return x
    n, _, h, w = x.shape
    dev = x.device
    apply = torch.rand(n, device=dev, generator=gen) < p
    y = _affine(x, gen)
    mask = (y > 0.02).float()
    shading = _low_frequency(n, 4, h, gen, dev)
    y = y * (1 + _uniform(n, 0.0, 0.6, gen, dev).view(n, 1, 1, 1) * (shading - 0.5) * 2)
    gamma = torch.exp(_uniform(n, math.log(0.6), math.log(1.6), gen, dev)).view(n, 1, 1, 1)
    contrast = _uniform(n, 0.7, 1.2, gen, dev).view(n, 1, 1, 1)
    bright = _uniform(n, -0.1, 0.1, gen, dev).view(n, 1, 1, 1)
    y = (y.clamp(0, 1) ** gamma * contrast + bright * mask).clamp(0, 1)
    backdrop = _uniform(n, 0, 1, gen, dev) < 0.3
    ramp = torch.linspace(0, 1, w, device=dev).view(1, 1, 1, w).expand(n, 1, h, w)
    ramp = torch.where((_uniform(n, 0, 1, gen, dev) < 0.5).view(n, 1, 1, 1), ramp, ramp.transpose(2, 3))
    texture = _low_frequency(n, 7, h, gen, dev)
    level = _uniform(n, 0.05, 0.35, gen, dev).view(n, 1, 1, 1)
    bg = level * (0.5 * ramp + 0.5 * texture)
    y = torch.where(backdrop.view(n, 1, 1, 1), y * mask + bg * (1 - mask), y)
    blurred = F.avg_pool2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    y = y + _uniform(n, -0.5, 1.0, gen, dev).view(n, 1, 1, 1) * (blurred - y)
    y = y + _uniform(n, 0.0, 0.06, gen, dev).view(n, 1, 1, 1) * torch.randn(
        y.shape, device=dev, generator=gen
    )
    jpeg = _uniform(n, 0, 1, gen, dev) < 0.3
    y = torch.where(jpeg.view(n, 1, 1, 1), _jpeg_like(y, _uniform(n, 0.02, 0.1, gen, dev)), y)
    y = y.clamp(0, 1)
    y = y / y.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
    return torch.where(apply.view(n, 1, 1, 1), y, x)


SHORTS, SKIRT = 1, 3  # Trouser and Dress: the classes whose parts look like garments of no class
# Clothes, whose bands are parts of clothes; a band of a shoe or a bag still looks like a shoe or a bag.
CLOTHES = (0, 1, 2, 3, 4, 6)


def _refit(x: torch.Tensor, top: torch.Tensor, bottom: torch.Tensor) -> torch.Tensor:
    """Keep rows [top, bottom) of each image (fractions of its height), zoom that band to fill 28 px
    across its longer side, centred: what the photo preprocessing does to a garment of that shape."""
    n, _, h, w = x.shape
    rows = torch.arange(h, device=x.device).view(1, 1, h, 1) + 0.5
    band = x * ((rows >= top.view(n, 1, 1, 1) * h) & (rows < bottom.view(n, 1, 1, 1) * h)).float()
    on = band > 0.02
    any_row, any_col = on.any(dim=3).squeeze(1), on.any(dim=2).squeeze(1)  # (n, h), (n, w)
    idx_h, idx_w = torch.arange(h, device=x.device).float(), torch.arange(w, device=x.device).float()
    r0 = torch.where(any_row, idx_h, float(h)).amin(1)
    r1 = torch.where(any_row, idx_h, -1.0).amax(1) + 1
    c0 = torch.where(any_col, idx_w, float(w)).amin(1)
    c1 = torch.where(any_col, idx_w, -1.0).amax(1) + 1
    side = torch.maximum(r1 - r0, c1 - c0).clamp_min(1.0)
    cy, cx = (r0 + r1) / 2, (c0 + c1) / 2
    zero = torch.zeros_like(side)
    theta = torch.stack(
        [
            torch.stack([side / w, zero, (2 * cx / w) - 1], 1),
            torch.stack([zero, side / h, (2 * cy / h) - 1], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(band, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out / out.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)


def none_of_the_ten(
    x: torch.Tensor, labels: torch.Tensor, gen: torch.Generator, hat_share: float | None = None
) -> torch.Tensor:
    """Pictures of garments that are none of the ten classes, made from the batch (outlier exposure).

    A trouser's upper 30-50% is a pair of shorts; a dress's lower half is a skirt; any other
    piece of clothing (:data:`CLOTHES`; the others are dropped) cut to a band of a third to two thirds of
    its height is a part, not a garment. Each is
    refitted to 28 px as the photo preprocessing would. A ``hat_share`` of them (default
    :data:`HAT_SHARE`) are :func:`hats` instead. Trained towards the uniform distribution, they
    teach the model to say "not sure" on such shapes instead of "Trouser" at 99%.
    """
    x, labels = (
        x[torch.isin(labels, torch.tensor(CLOTHES, device=x.device))],
        labels[torch.isin(labels, torch.tensor(CLOTHES, device=x.device))],
    )
    n = x.shape[0]
    dev = x.device
    if n == 0:
        return x
    length = _uniform(n, 0.3, 0.65, gen, dev)
    length = torch.where(labels == SHORTS, 0.3 + (length - 0.3) * (0.2 / 0.35), length)  # shorts: 30-50%
    start = _uniform(n, 0, 1, gen, dev) * (1 - length)
    start = torch.where(labels == SHORTS, torch.zeros_like(start), start)
    start = torch.where(labels == SKIRT, 1 - length, start)
    parts = _refit(x, start, start + length)
    hat = torch.rand(n, device=dev, generator=gen) < (HAT_SHARE if hat_share is None else hat_share)
    return torch.where(hat.view(n, 1, 1, 1), hats(x, gen), parts)


HAT_SHARE = 1 / 3  # of the made-up none-of-the-ten pictures, the share that are hats


def hats(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Hats made from a [0, 1] batch of clothes (n, 1, H, W): the middle of each garment, zoomed so its
    fabric fills the frame, cut to a dome (the upper half of an ellipse over a flat base) with, half the
    time, a brim (a flat ellipse across the base, wider than the dome, or a cap's peak to one side); a
    quarter are whole ellipses, hats seen from above.

    The data set holds no hats; photos of hats mostly fall on Bag, the class without a telling outline.
    """
    n, _, h, w = x.shape
    dev = x.device
    fabric = _zoomed_fabric(x, gen)
    ys = torch.linspace(-1, 1, h, device=dev).view(1, h, 1)
    xs = torch.linspace(-1, 1, w, device=dev).view(1, 1, w)
    base = _uniform(n, 0.1, 0.6, gen, dev).view(n, 1, 1)  # the dome's flat base, in [-1, 1] from the top
    half_w = _uniform(n, 0.45, 0.85, gen, dev).view(n, 1, 1)
    height = _uniform(n, 0.5, 1.1, gen, dev).view(n, 1, 1)
    round_ = (torch.rand(n, device=dev, generator=gen) < 0.25).view(n, 1, 1)  # a hat seen from above
    dome = ((xs / half_w) ** 2 + ((ys - base) / height) ** 2 <= 1) & ((ys <= base) | round_)
    brim_w = half_w * _uniform(n, 1.1, 1.5, gen, dev).view(n, 1, 1)
    brim_h = _uniform(n, 0.08, 0.25, gen, dev).view(n, 1, 1)
    side = torch.where(torch.rand(n, device=dev, generator=gen) < 0.5, 1.0, -1.0).view(n, 1, 1)
    peak = torch.rand(n, device=dev, generator=gen).view(n, 1, 1) < 0.5  # a cap's peak, not a round brim
    brim_x = torch.where(peak, xs - side * half_w * 0.6, xs)
    brim = (brim_x / brim_w) ** 2 + ((ys - base) / brim_h) ** 2 <= 1
    with_brim = (torch.rand(n, device=dev, generator=gen) < 0.5).view(n, 1, 1)
    mask = (dome | (brim & with_brim)).unsqueeze(1).float()
    hat = fabric * mask + 0.15 * mask  # dark fabric still shows the outline, as the negated photos do
    hat = _refit(hat, torch.zeros(n, device=dev), torch.ones(n, device=dev))
    return hat


FOOTWEAR = (5, 7, 9)  # Sandal, Sneaker, Ankle boot


def footwear_pairs(x: torch.Tensor, labels: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Show each footwear image of a [0, 1] batch (n, 1, 28, 28), with probability ``p``, as a pair.

    Photos of shoes show pairs: two side views one behind the other, or two soles seen from above with
    the toes up. The data set shows one shoe from the side. A pair is two copies of the shoe (the second
    mirrored top-bottom half of the time, as a left shoe mirrors a right one seen from above) offset across
    the shoe by 0.5-1.1 of its height and along it by up to a quarter of its length, the front copy
    hiding the back one, the whole turned by up to 25 degrees, or by 90 +- 25 degrees half the time; then
    refitted to 28 px as the photo preprocessing would.
    """
    n, _, h, w = x.shape
    dev = x.device
    pick = torch.isin(labels, torch.tensor(FOOTWEAR, device=dev)) & (
        torch.rand(n, device=dev, generator=gen) < p
    )
    idx = torch.nonzero(pick).flatten()
    if len(idx) == 0:
        return x
    m = len(idx)
    shoe = x[idx]
    upright = torch.rand(m, device=dev, generator=gen) < 0.5
    angle = _uniform(m, -25.0, 25.0, gen, dev) + torch.where(
        upright, 90.0 * torch.sign(_uniform(m, -1, 1, gen, dev)), torch.zeros(m, device=dev)
    )
    angle = angle * math.pi / 180
    cos, sin = torch.cos(angle), torch.sin(angle)
    across = _uniform(m, 0.5, 1.1, gen, dev) * h * 0.45  # a shoe fills about 45% of the image's height
    along = _uniform(m, -0.25, 0.25, gen, dev) * w
    # the offset between the two copies, turned with the pair (pixels of the 2h x 2w canvas)
    dx, dy = cos * along - sin * across, sin * along + cos * across
    mirror = torch.where(torch.rand(m, device=dev, generator=gen) < 0.5, -1.0, 1.0)
    scale = 0.8

    def place(sign: float, flip_y: torch.Tensor) -> torch.Tensor:
        # canvas (2h x 2w) -> shoe coordinates: v = F R^T (u - c) / scale, in each grid's own units
        cx, cy = sign * dx / 2, sign * dy / 2
        r00, r01, r10, r11 = cos, sin, -sin * flip_y, cos * flip_y
        k = 2 / scale  # canvas half-size (w) over shoe half-size (w / 2)
        theta = torch.stack(
            [
                torch.stack([k * r00, k * r01, -(r00 * cx + r01 * cy) / (w / 2) / scale], 1),
                torch.stack([k * r10, k * r11, -(r10 * cx + r11 * cy) / (h / 2) / scale], 1),
            ],
            1,
        )
        grid = F.affine_grid(theta, [m, 1, 2 * h, 2 * w], align_corners=False)
        return F.grid_sample(shoe, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    back, front = place(-1.0, torch.ones(m, device=dev)), place(1.0, mirror)
    pair = torch.where(front > 0.02, front, back)
    pair = _refit(pair, torch.zeros(m, device=dev), torch.ones(m, device=dev))
    pair = F.avg_pool2d(pair, 2)
    pair = pair / pair.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
    out = x.clone()
    out[idx] = pair
    return out


def _zoomed_fabric(x: torch.Tensor, gen: torch.Generator, lo: float = 0.35, hi: float = 0.6) -> torch.Tensor:
    """The middle of each image (a ``lo``-``hi`` share of its width and height), zoomed to fill it."""
    n = x.shape[0]
    zoom = _uniform(n, lo, hi, gen, x.device)
    zero = torch.zeros_like(zoom)
    theta = torch.stack([torch.stack([zoom, zero, zero], 1), torch.stack([zero, zoom, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", align_corners=False)
