"""Turn any picture into a Fashion-MNIST-style input: 28x28 uint8, the article light on black.

The data set was made from product thumbnails on a light background (paper, steps 1-7): trim
the edges close to the corner colour (within 5% of max intensity), resize the longest edge to
28, sharpen, extend the short edge to 28 and centre, negate, 8-bit grayscale. A user photo must
go through the same steps, or the model sees something it was never trained on. Here:

1. decode (:mod:`fmnist.predict.image_decode`: PNG, JPEG, WebP, GIF first frame, ...; EXIF
   orientation applied; transparency laid onto white, or onto black when the visible part is itself
   light, as in a chalk drawing), after checking from the header alone that the pixels and the
   decoded bytes are under the caps; a picture over 1024 px is box-shrunk right after decoding;
2. a photo on a busy backdrop (a border ring of many colours, :func:`plain_share`: a bed, a floor,
   a hanger on a wall) has its garment cut out (:mod:`fmnist.predict.segment`, OpenCV's GrabCut on
   the photo shrunk to 200 px), negated whatever the backdrop (the data set's packshots were all on
   white, so every garment in it is its negative), its own 1st-99th percentile stretched to the
   full range, the backdrop set to 0; then steps 5-7;
3. otherwise (a plain backdrop: a packshot, a scan, a drawing): grayscale, background = median of
   the border ring, invert when it is light, subtract it;
4. trim to the pixels more than 5% of full scale above the background;
5. resize the longest edge to ``28 - 2 * margin`` keeping the aspect; ``margin`` is 0 because in
   the training set the object's longest edge is the full 28 px in 98.3% of the images (any
   non-zero pixel; 27 px in 1.7%, never shorter) [measured on the 60,000 training images];
6. a light unsharp mask (Gaussian sigma 1, as the paper's sharpen) and a stretch of the
   brightest pixel to 255 (the training images reach 255 in 91.6% of cases, mean max 254.9);
7. centre on a black 28x28 canvas, an odd leftover pixel above / left (as the data set does).

Step 2 was chosen on the 741 photos of ../shared/photos with the then ``make run`` model (cpu-fast-v1):
lenient top-1 on the 570 in-class photos 43.9% with steps 3-7 alone, 57.9% with the cut and
negation, 60.2% with the stretch too. Blurring, flattening or histogram-matching the garment,
gamma 0.7 or 1.4 and a tighter (eroded) cut measured within two points of it or worse
(benchmarks/NOTES.md, "Real photos").

Amount 0.25 and Lanczos were chosen on 400 test images rendered as noisy JPEG shop photos (6-15x
upscaled, dark on a light backdrop, off-centre) with a 90%-accurate FastCNN: top-1 agreement
with the original images 0.968 and accuracy 0.922 (0.925 on the originals); amount 0 gave
0.963, 0.5 gave 0.963 and 1.0 gave 0.927 [measured].

An image that is already 28x28 on a dark background is taken as it is (grayscale only): it is
already in the data set's format, and re-trimming would only shift or rescale it by a pixel.

Imports numpy, Pillow and OpenCV, never torch: the ONNX serving path uses this module too.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
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
from fmnist.predict.segment import DEFAULT_SEGMENT, garment_mask, shrink_to

SIZE = 28  # output side, pixels
MARGIN = 0  # pixels left free on each side of the longest edge (measured: 0, see the docstring)
TRIM_FUZZ = 0.05 * 255  # the paper's trim: pixels within 5% of full scale of the background go
SHARPEN = 0.25  # unsharp-mask amount (0: off); "light": the paper's Gaussian sharpen, sigma 1
RESAMPLE = Image.Resampling.LANCZOS  # fit filter; BOX and BICUBIC measured within noise of it
# A border ring of which at least PLAIN_SHARE of the pixels lie within PLAIN_TOLERANCE (every channel) of its
# median colour is a plain backdrop, where the trim alone finds the article, even when the article touches the
# edge as the data set's own crops do (those renders: 0.66 or more). 11 of the 741 photos of ../shared/photos
# (beds, floors, hangers; median share 0.16) are that plain.
PLAIN_SHARE, PLAIN_TOLERANCE = 0.6, 8.0
STRETCH_PERCENTILES = (1.0, 99.0)  # a cut-out garment's own range, mapped to 0..255 after negation
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


def fit_to_canvas(
    article: np.ndarray, mask: np.ndarray, *, margin: int, sharpen: float, name: str
) -> np.ndarray:
    """Steps 4-7: trim ``article`` (light on 0) to ``mask``'s box, fit, sharpen, stretch, centre on 28x28."""
    if not mask.any():
        raise BlankImage(f"{name}: no article found (the picture is nearly uniform)")
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    crop = article[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    fit = SIZE - 2 * margin
    scale = fit / max(h, w)
    size = (min(fit, max(1, round(w * scale))), min(fit, max(1, round(h * scale))))
    small = np.asarray(Image.fromarray(crop.astype(np.float32)).resize(size, RESAMPLE), dtype=np.float32)
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


def fashion_style(
    gray: np.ndarray,
    *,
    margin: int = MARGIN,
    sharpen: float = SHARPEN,
    fuzz: float = TRIM_FUZZ,
    name: str = "image",
) -> np.ndarray:
    """A picture on a plain backdrop: grayscale float (h, w) in 0..255 -> uint8 (28, 28), light on black."""
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
    return fit_to_canvas(article, mask, margin=margin, sharpen=sharpen, name=name)


def plain_share(rgb: np.ndarray) -> float:
    """The share of the border ring (2% of the short side) within PLAIN_TOLERANCE of the ring's median colour."""
    h, w = rgb.shape[:2]
    b = max(1, round(0.02 * min(h, w)))
    sides = (rgb[:b], rgb[-b:], rgb[:, :b], rgb[:, -b:])
    ring = np.concatenate([side.reshape(-1, 3) for side in sides]).astype(np.float32)
    return float((np.abs(ring - np.median(ring, axis=0)).max(axis=1) <= PLAIN_TOLERANCE).mean())


def busy_photo_rgb(img: Image.Image) -> np.ndarray | None:
    """The picture as RGB uint8 shrunk for segmentation, when it is a photo on a busy backdrop; else None.

    None for what the plain path already handles: the data set's own 28x28 format, pictures with
    transparency (their alpha is the cut), modes without colour (16-bit, float) and plain backdrops
    (:func:`plain_share` at least PLAIN_SHARE: a packshot, a scan, a drawing).
    """
    if (
        max(img.size) <= SIZE
        or "transparency" in img.info
        or img.mode not in ("RGB", "L", "P", "CMYK", "YCbCr")
    ):
        return None
    rgb = shrink_to(np.asarray(img.convert("RGB")), DEFAULT_SEGMENT.side)
    return rgb if plain_share(rgb) < PLAIN_SHARE else None


def busy_photo_to_input(rgb: np.ndarray, *, margin: int, sharpen: float, name: str) -> np.ndarray:
    """A photo on a bed, floor or hanger: cut the garment out (GrabCut), negate it, fit it.

    Negated whatever the backdrop: the data set's packshots were all on white, so every garment in it
    is its own negative (a black T-shirt is bright). The garment's own 1st-99th percentile is then
    stretched to the full range, as a packshot's exposure would. Without a cut (GrabCut found nothing),
    the whole picture is the garment.
    """
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mask = garment_mask(rgb)
    if mask is None:
        mask = np.ones(gray.shape, dtype=bool)
    article = 255.0 - gray
    lo, hi = np.percentile(article[mask], STRETCH_PERCENTILES)
    article = np.clip((article - lo) * (255.0 / max(hi - lo, 1.0)), 1.0, 255.0) * mask
    return fit_to_canvas(article, mask, margin=margin, sharpen=sharpen, name=name)


def image_to_input(
    img: Image.Image, *, name: str, sharpen: float = SHARPEN, margin: int = MARGIN
) -> np.ndarray:
    """A decoded picture (see :func:`open_image`) -> uint8 (28, 28) model input."""
    try:
        rgb = busy_photo_rgb(img)
        if rgb is not None:
            return busy_photo_to_input(rgb, margin=margin, sharpen=sharpen, name=name)
    except MemoryError:
        raise OutOfMemory(f"{name}: out of memory while cutting out the garment") from None
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
