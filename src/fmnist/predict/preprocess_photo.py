"""Turn any picture into a Fashion-MNIST-style input: 28x28 uint8, the article light on black.

The data set was made from product thumbnails on a light background (paper, steps 1-7): trim
the edges close to the corner colour (within 5% of max intensity), resize the longest edge to
28, sharpen, extend the short edge to 28 and centre, negate, 8-bit grayscale. A user photo must
go through the same steps, or the model sees something it was never trained on. Here:

1. decode (PNG, JPEG, WebP, GIF first frame, ...; EXIF orientation applied; transparency laid
   onto white, or onto black when the visible part is itself light, as in a chalk drawing),
   after checking from the header alone that the pixels and the decoded bytes are under the
   caps (decompression bombs: a 190 kB PNG can decode to 196 MB); a picture over 1024 px is
   box-shrunk by an integer factor right after decoding, in strips;
2. grayscale (16-bit and float images scaled to 0..255);
3. background = median of the border ring; invert when it is light, then subtract it;
4. trim to the pixels more than 5% of full scale above the background;
5. resize the longest edge to ``28 - 2 * margin`` keeping the aspect; ``margin`` is 0 because in
   the training set the object's longest edge is the full 28 px in 98.3% of the images (any
   non-zero pixel; 27 px in 1.7%, never shorter) [measured on the 60,000 training images];
6. a light unsharp mask (Gaussian sigma 1, as the paper's sharpen) and a stretch of the
   brightest pixel to 255 (the training images reach 255 in 91.6% of cases, mean max 254.9);
7. centre on a black 28x28 canvas, an odd leftover pixel above / left (as the data set does).

Amount 0.25 and Lanczos were chosen on 400 test images rendered as noisy JPEG shop photos (6-15x
upscaled, dark on a light backdrop, off-centre) with a 90%-accurate FastCNN: top-1 agreement
with the original images 0.968 and accuracy 0.922 (0.925 on the originals); amount 0 gave
0.963, 0.5 gave 0.963 and 1.0 gave 0.927 [measured].

An image that is already 28x28 on a dark background is taken as it is (grayscale only): it is
already in the data set's format, and re-trimming would only shift or rescale it by a pixel.

Imports numpy and Pillow only, never torch: the ONNX serving path uses this module too.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from fmnist.predict.image_decode import (
    DEFAULT_LIMITS,
    WORK_SIDE,
    BlankImage,
    DecodeLimits,
    ImageSource,
    NotAnImage,
    OutOfMemory,
    describe,
    open_image,
    to_gray,
)

SIZE = 28  # output side, pixels
MARGIN = 0  # pixels left free on each side of the longest edge (measured: 0, see the docstring)
TRIM_FUZZ = 0.05 * 255  # the paper's trim: pixels within 5% of full scale of the background go
SHARPEN = 0.25  # unsharp-mask amount (0: off); "light": the paper's Gaussian sharpen, sigma 1
RESAMPLE = Image.Resampling.LANCZOS  # fit filter; BOX and BICUBIC measured within noise of it
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")


def _shrink(gray: np.ndarray, side: int = WORK_SIDE) -> np.ndarray:
    """Area-aware downscale so the longest side is at most ``side`` (big photos only)."""
    h, w = gray.shape
    if max(h, w) <= side:
        return gray
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.BOX), dtype=np.float32)


def _gaussian_blur(x: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Separable Gaussian, edge pixels replicated (ImageMagick's default virtual pixels)."""
    radius = max(1, int(round(3 * sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-(t**2) / (2 * sigma**2))
    k /= k.sum()
    p = np.pad(x, radius, mode="edge")
    rows = sum(k[i] * p[:, i : i + x.shape[1]] for i in range(len(k)))  # (h + 2r, w)
    return sum(k[i] * rows[i : i + x.shape[0], :] for i in range(len(k)))


def background_level(gray: np.ndarray) -> float:
    """Median of the border ring (2% of the short side, at least one pixel): the backdrop's level."""
    h, w = gray.shape
    b = max(1, round(0.02 * min(h, w)))
    ring = np.concatenate([gray[:b].ravel(), gray[-b:].ravel(), gray[:, :b].ravel(), gray[:, -b:].ravel()])
    return float(np.median(ring))


def fashion_style(
    gray: np.ndarray,
    *,
    margin: int = MARGIN,
    sharpen: float = SHARPEN,
    fuzz: float = TRIM_FUZZ,
    name: str = "image",
) -> np.ndarray:
    """Grayscale float (h, w) in 0..255 -> uint8 (28, 28), the article light on black, centred."""
    gray = np.asarray(gray, dtype=np.float32)
    background = background_level(gray)
    light_background = background > 127.5
    if gray.shape == (SIZE, SIZE) and not light_background:
        return np.clip(np.rint(gray), 0, 255).astype(np.uint8)  # already the data set's format
    if light_background:
        gray, background = 255.0 - gray, 255.0 - background
    gray = _shrink(gray)
    article = np.clip(gray - background, 0, None)  # (h, w), background at 0
    mask = article > fuzz
    if min(article.shape) > 2 * SIZE:
        # One noisy pixel in a photo's backdrop would widen the trim box: decide it on a 3x3 median.
        smooth = Image.fromarray(article).filter(ImageFilter.MedianFilter(3))
        mask = np.asarray(smooth, dtype=np.float32) > fuzz
    if not mask.any():
        raise BlankImage(f"{name}: no article found (the picture is nearly uniform)")
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    crop = article[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    fit = SIZE - 2 * margin
    scale = fit / max(h, w)
    size = (min(fit, max(1, round(w * scale))), min(fit, max(1, round(h * scale))))
    small = np.asarray(Image.fromarray(crop).resize(size, RESAMPLE), dtype=np.float32)
    if sharpen > 0:
        small = small + sharpen * (small - _gaussian_blur(small, 1.0))
    small = np.clip(small, 0, None)
    peak = float(small.max())
    if peak <= 0:
        raise BlankImage(f"{name}: no article found after resizing")
    small = small * (255.0 / peak)
    out = np.zeros((SIZE, SIZE), dtype=np.float32)
    # An odd leftover pixel goes above / left of the article, as in the data set (ImageMagick's
    # centre gravity): 94% of odd row pads and 99.7% of odd column pads there [measured, train].
    top, left = (SIZE - size[1] + 1) // 2, (SIZE - size[0] + 1) // 2
    out[top : top + size[1], left : left + size[0]] = small
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def image_to_input(
    img: Image.Image, *, name: str, sharpen: float = SHARPEN, margin: int = MARGIN
) -> np.ndarray:
    """A decoded picture (see :func:`open_image`) -> uint8 (28, 28) model input."""
    try:
        gray = to_gray(img)
    except MemoryError:
        raise OutOfMemory(f"{name}: out of memory converting to grayscale") from None
    except Exception as exc:  # an exotic mode Pillow cannot convert
        raise NotAnImage(f"{name}: unsupported colour mode {img.mode!r} ({exc})") from None
    try:
        return fashion_style(gray, margin=margin, sharpen=sharpen, name=name)
    except MemoryError:
        raise OutOfMemory(f"{name}: out of memory while processing") from None


def prepare_image(
    source: ImageSource,
    *,
    name: str | None = None,
    sharpen: float = SHARPEN,
    margin: int = MARGIN,
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> np.ndarray:
    """Any picture (path, bytes, file object, PIL image, array) -> uint8 (28, 28) model input.

    ``limits``: what one picture may cost to decode (see :func:`fmnist.predict.image_decode.probe_image`).
    """
    name = name or describe(source)
    return image_to_input(
        open_image(source, name=name, limits=limits), name=name, sharpen=sharpen, margin=margin
    )


def encode_png(image: np.ndarray) -> bytes:
    """uint8 (h, w) -> PNG bytes (for --save-processed and the web page)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def find_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted), chosen by suffix."""
    root = Path(folder)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
