"""Open any picture safely: from its header, refuse what would cost too much to decode, then decode.

Uploads and user files are untrusted: a 190 kB PNG can decode to 196 MB, and Pillow raises many
exception types for damaged files. Every failure here is an :class:`ImageError` that names the
input; the caps (:class:`DecodeLimits`) are checked from the header before any pixel is decoded,
and a picture over 1024 px is box-shrunk by an integer factor right after decoding, in strips.

Imports numpy and Pillow only, never torch: the ONNX serving path uses this module too.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fmnist.errors import FmnistError

WORK_SIDE = 512  # big photos are first shrunk to this longest side; plenty for a 28 px result
DEFAULT_MAX_PIXELS = 50_000_000  # decompression-bomb cap: width * height, read from the header
# What one picture may cost to decode, estimated from its header (see decode_cost): 128 MiB lets
# through a 33-megapixel RGB(A) PNG (5792 x 5792), a 50-megapixel grayscale one, and a baseline
# JPEG of any size under the pixel cap (decoded at 1/2..1/8 scale); a 7000 x 7000 RGBA PNG (196
# MB) is refused. Everything after the decode works on at most 1024 x 1024 pixels, so this is
# the bulk of what one picture costs.
DEFAULT_MAX_DECODED_BYTES = 128 * 2**20
STRIP_PIXELS = 1 << 20  # the early shrink works on strips of about this many pixels
MIB = 2**20

ImageSource = str | os.PathLike | bytes | Image.Image | np.ndarray | BinaryIO


@dataclasses.dataclass(frozen=True)
class DecodeLimits:
    """What one picture may cost, checked from its header: pixels, and bytes once decoded (None: no cap)."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_decoded_bytes: int | None = DEFAULT_MAX_DECODED_BYTES


DEFAULT_LIMITS = DecodeLimits()


class ImageError(FmnistError):
    """An input that cannot be turned into a model input. The message names the input."""


class NotAnImage(ImageError):
    """Not a picture format Pillow can read (or an empty file)."""


class CorruptImage(ImageError):
    """A picture whose header reads but whose data is truncated or damaged."""


class ImageTooLarge(ImageError):
    """More pixels, or more bytes once decoded, than the caps: refused before decoding."""


class BlankImage(ImageError):
    """A uniform picture: nothing to classify."""


class OutOfMemory(ImageError):
    """The machine ran out of memory on this picture: not the picture's fault (a server answers 503)."""


def describe(source: Any, index: int | None = None) -> str:
    """A short name for messages: the path, or the kind of object."""
    if isinstance(source, str | os.PathLike):
        return str(source)
    name = getattr(source, "filename", None) or getattr(source, "name", None)
    if isinstance(name, str) and name:
        return name
    return f"input {index}" if index is not None else type(source).__name__


def bytes_per_pixel(mode: str) -> int:
    """Pillow's storage per pixel: 1 for 1/L/P, 2 for I;16*, else 4 (multi-band 8-bit modes are padded to 32 bits)."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


def decode_cost(img: Image.Image) -> int:
    """Bytes that decoding this (lazily opened) picture allocates, from its header alone.

    The decoded image (after any JPEG draft), plus: libwebp's animation decoder keeps a canvas,
    the previous canvas and a copy besides the image (four times the image, measured); libtiff
    may decode into a buffer of its own (twice, an upper bound); a progressive JPEG keeps every
    DCT coefficient of the full-size image (2 bytes each, per component at its sampling)
    whatever the draft scale (measured: within 1% of the peak). Pillow's own working buffers
    add about 10-15 MB on top [measured on PNG, GIF, BMP, TIFF, WebP and JPEG].
    """
    width, height = img.size
    cost = width * height * bytes_per_pixel(img.mode)
    cost *= {"WEBP": 4, "TIFF": 2}.get(img.format or "", 1)
    layers = getattr(img, "layer", None)
    if img.format in ("JPEG", "MPO") and img.info.get("progressive") and layers:
        full_w, full_h = getattr(img, "_fmnist_header_size", img.size)
        h_max = max(layer[1] for layer in layers) or 1
        v_max = max(layer[2] for layer in layers) or 1
        for _, h_samp, v_samp, *_ in layers:
            blocks_w = math.ceil(full_w * h_samp / h_max / 8)
            blocks_h = math.ceil(full_h * v_samp / v_max / 8)
            cost += blocks_w * blocks_h * 64 * 2
    return cost


def _is_lazy(img: Image.Image) -> bool:
    """Opened from a file but not decoded yet: its size and mode come from the header."""
    return bool(getattr(img, "tile", None))


def probe_image(
    source: ImageSource,
    *,
    name: str | None = None,
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> Image.Image:
    """Open ``source`` lazily (header only) and refuse it if it would cost too much to decode.

    Checks width * height against ``limits.max_pixels`` and :func:`decode_cost` against
    ``limits.max_decoded_bytes`` (None: no cap) before any pixel is decoded; a big JPEG is set to decode
    at 1/2..1/8 scale first. Returns the still undecoded image (a PIL image already in memory is
    returned as it is). Every failure is an :class:`ImageError` naming the input; nothing else
    escapes, because uploads are untrusted and Pillow raises many types for damaged files.
    """
    name = name or describe(source)
    if isinstance(source, Image.Image):
        img = source
    else:
        if isinstance(source, bytes | bytearray | memoryview):
            if len(source) == 0:
                raise NotAnImage(f"{name}: empty file")
            source = io.BytesIO(source)
        elif isinstance(source, str | os.PathLike):
            path = Path(source)
            if not path.exists():
                raise ImageError(f"{name}: no such file")
            if path.is_dir():
                raise ImageError(f"{name}: is a folder, not an image")
            if not path.is_file():
                raise NotAnImage(f"{name}: not a regular file")
            if path.stat().st_size == 0:
                raise NotAnImage(f"{name}: empty file")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own caps apply
                img = Image.open(source)
        except UnidentifiedImageError:
            raise NotAnImage(f"{name}: not an image (or a format Pillow cannot read)") from None
        except Image.DecompressionBombError as exc:  # over twice Pillow's own cap: refused in open()
            raise ImageTooLarge(f"{name}: too many pixels: {exc}") from None
        except MemoryError:
            raise OutOfMemory(f"{name}: out of memory reading the header") from None
        except OSError as exc:
            raise ImageError(f"{name}: cannot read: {exc.strerror or exc}") from None
        except Exception as exc:  # damaged headers raise ValueError, SyntaxError, struct.error, ...
            raise CorruptImage(f"{name}: damaged image header ({type(exc).__name__})") from None
    width, height = img.size
    max_pixels, max_decoded_bytes = limits.max_pixels, limits.max_decoded_bytes
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{name}: {width}x{height} is {width * height / 1e6:.1f} megapixels, over the cap of {max_pixels / 1e6:g}"
        )
    if width == 0 or height == 0:
        raise CorruptImage(f"{name}: image has no pixels ({width}x{height})")
    if not _is_lazy(img):
        return img  # already decoded: its memory is spent
    if img.format in ("JPEG", "MPO") and max(width, height) > 2 * WORK_SIDE:
        img._fmnist_header_size = img.size  # type: ignore[attr-defined]  # for decode_cost
        try:
            img.draft(img.mode, (WORK_SIDE, WORK_SIDE))  # decode at 1/2..1/8 scale: faster, same result
        except Exception as exc:
            raise CorruptImage(f"{name}: damaged image header ({type(exc).__name__})") from None
    cost = decode_cost(img)
    if max_decoded_bytes is not None and cost > max_decoded_bytes:
        raise ImageTooLarge(
            f"{name}: {width}x{height} {img.format or ''} {img.mode} would take {cost / MIB:.0f} MiB to decode, "
            f"over the cap of {max_decoded_bytes / MIB:g} MiB per picture"
        )
    return img


# Pillow's transpose for each EXIF orientation (as ImageOps.exif_transpose).
ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _working_mode(img: Image.Image) -> str:
    """The mode a big picture is shrunk in: one whose box average is what to_gray would see."""
    mode = img.mode
    if "transparency" in img.info or mode in ("PA", "La", "RGBa"):
        return "RGBA"
    if mode in ("1", "L"):
        return "L"
    if mode.startswith("I;16"):
        return "I"
    if mode in ("I", "F", "LA", "RGB", "RGBA"):
        return mode
    return "RGB"  # P without transparency, CMYK, YCbCr, LAB, HSV, RGBX


def shrink_early(img: Image.Image, side: int = WORK_SIDE) -> Image.Image:
    """A decoded picture over twice ``side`` -> box-averaged by an integer factor to at most 2 * side.

    Done strip by strip, so the only full-size buffer is the decoded image itself (the float
    grayscale of a 7000 x 7000 RGBA picture alone would be 784 MB). RGBA is averaged with
    premultiplied alpha (Pillow's reduce), so compositing afterwards gives the average of the
    composited pixels: the same picture as shrinking after to_gray, within 8-bit rounding.
    """
    width, height = img.size
    factor = max(width, height) // side
    if factor < 2:
        return img
    mode = _working_mode(img)
    out = Image.new(mode, (math.ceil(width / factor), math.ceil(height / factor)))
    rows = factor * max(1, STRIP_PIXELS // (width * factor))  # a multiple of factor: blocks stay whole
    for top in range(0, height, rows):
        strip = img.crop((0, top, width, min(height, top + rows)))
        if strip.mode != mode:
            strip = strip.convert(mode)
        out.paste(strip.reduce(factor), (0, top // factor))
    if img.mode.startswith("I;16"):
        out = out.convert(img.mode)  # keep the 16-bit scaling to_gray applies
    return out


def decode_image(img: Image.Image, *, name: str) -> Image.Image:
    """Decode a probed picture (first frame), shrink it if big, apply its EXIF orientation."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own caps apply
            img.load()
            if max(img.size) <= 2 * WORK_SIDE:
                return ImageOps.exif_transpose(img) or img
            try:
                orientation = int(img.getexif().get(0x0112, 1))
            except Exception:  # a damaged EXIF block: ignore it, as exif_transpose would fail anyway
                orientation = 1
            img = shrink_early(img)
            return img.transpose(ORIENTATION[orientation]) if orientation in ORIENTATION else img
    except ImageError:
        raise
    except MemoryError:
        raise OutOfMemory(f"{name}: out of memory while decoding") from None
    except Image.DecompressionBombError as exc:  # some formats check again while loading
        raise ImageTooLarge(f"{name}: too many pixels: {exc}") from None
    except Exception as exc:  # OSError "image file is truncated", SyntaxError, ValueError, EOFError ...
        raise CorruptImage(f"{name}: truncated or corrupt image data ({exc})") from None


def open_image(
    source: ImageSource,
    *,
    name: str | None = None,
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> Image.Image:
    """Decode ``source`` (first frame), with its EXIF orientation applied; big ones come back shrunk.

    :func:`probe_image` first (the caps, from the header), then :func:`decode_image`.
    """
    name = name or describe(source)
    if isinstance(source, np.ndarray):
        return _from_array(source, name)
    return decode_image(probe_image(source, name=name, limits=limits), name=name)


def _from_array(array: np.ndarray, name: str) -> Image.Image:
    """(h, w) grayscale, (h, w, 3) RGB or (h, w, 4) RGBA; uint8, 16-bit or float in [0, 1] or [0, 255]."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or a.size == 0:
        raise NotAnImage(f"{name}: array of shape {a.shape} is not an image (h, w), (h, w, 3) or (h, w, 4)")
    if a.dtype == np.uint8:
        return Image.fromarray(np.ascontiguousarray(a))
    if a.dtype.kind == "b":
        return Image.fromarray(a.astype(np.uint8) * 255)
    if a.dtype.kind not in "uif":
        raise NotAnImage(f"{name}: array of dtype {a.dtype} is not an image")
    f = a.astype(np.float64)
    if not np.isfinite(f).all():
        raise CorruptImage(f"{name}: array holds NaN or infinity")
    if a.dtype.kind == "f" and f.max(initial=0) <= 1.0:
        f = f * 255.0
    elif a.dtype.kind in "ui" and a.dtype.itemsize > 1 and f.max(initial=0) > 255:
        f = f / 257.0  # 16-bit range
    return Image.fromarray(np.clip(np.rint(f), 0, 255).astype(np.uint8))


def to_gray(img: Image.Image) -> np.ndarray:
    """float32 (h, w) in 0..255: transparency composited, 16-bit and float modes scaled."""
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16") or a.max(initial=0) > 255:
            a = a / 257.0
        return np.clip(a, 0, 255).astype(np.float32)
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        if a.max(initial=0) <= 1.0:
            a = a * 255.0
        return np.clip(np.nan_to_num(a), 0, 255).astype(np.float32)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[:, :, 3]
        luma = rgba[:, :, :3] @ np.array(
            [0.299, 0.587, 0.114], dtype=np.float32
        )  # ITU-R 601, as Pillow's "L"
        visible = alpha > 0.5
        # A dark garment cut out of its photo goes onto white (its shop background); a light
        # drawing on a transparent canvas goes onto black, or it would vanish.
        backdrop = 0.0 if visible.any() and visible.mean() < 1 and luma[visible].mean() > 0.5 else 1.0
        return ((luma * alpha + backdrop * (1 - alpha)) * 255.0).astype(np.float32)
    if mode not in ("L", "RGB"):
        img = img.convert("RGB")  # CMYK, YCbCr, P, 1, ...
    return np.asarray(img.convert("L"), dtype=np.float32)
