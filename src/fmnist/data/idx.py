"""Read and write IDX files (the MNIST format) from their header, never from fixed offsets.

Layout: two zero bytes, a dtype code, the number of dimensions; then each dimension as a
big-endian uint32; then the values, big-endian, row-major. Any malformed input raises
:class:`fmnist.errors.IdxError` naming the file and what is wrong, nothing else.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from fmnist.errors import IdxError
from fmnist.fsio import atomic_open

GZIP_MAGIC = b"\x1f\x8b"

# IDX dtype code -> big-endian numpy dtype
DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
CODES: dict[str, int] = {dt.newbyteorder("=").str[1:]: code for code, dt in DTYPES.items()}


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse raw (already decompressed) IDX bytes into a native-endian array.

    ``name`` is used in error messages. uint8 data is returned as a read-only view of ``data``.
    """
    if data[:2] == GZIP_MAGIC:
        raise IdxError(f"{name}: still gzip-compressed (starts with 1f 8b); decompress it first")
    if len(data) < 4:
        raise IdxError(f"{name}: too short for an IDX header ({len(data)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise IdxError(
            f"{name}: bad magic number 0x{data[:4].hex()} (an IDX file starts with two zero bytes)"
        )
    if code not in DTYPES:
        raise IdxError(f"{name}: unknown IDX dtype code 0x{code:02x}")
    if ndim == 0:
        raise IdxError(f"{name}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxError(
            f"{name}: truncated header: {ndim} dimensions need {header} bytes, file has {len(data)}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = DTYPES[code]
    count = 1
    for d in dims:
        count *= d
    expected = count * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        shape = "x".join(str(d) for d in dims)
        raise IdxError(
            f"{name}: length mismatch: header declares {shape} {dtype.name} values "
            f"({expected} bytes) but the file holds {actual} bytes of data"
        )
    try:
        array = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)
    except ValueError as exc:  # more dimensions than numpy allows, or an empty shape too large to index
        shape = "x".join(str(d) for d in dims)
        raise IdxError(f"{name}: cannot hold an array of shape {shape}: {exc}") from None
    if dtype.itemsize > 1:
        array = array.astype(dtype.newbyteorder("="))
    return array


MAX_BYTES = 2 << 30  # 2 GiB: more than any IDX data set this toolkit reads (Fashion-MNIST: 47 MB)


def read_bytes(path: str | os.PathLike, limit: int | None = None) -> bytes:
    """The decompressed bytes of ``path``: gunzipped when it is gzip (by content, not by name).

    At most ``limit`` bytes (default ``MAX_BYTES``) are read or decompressed: a huge file or a
    small gzip bomb is a one-line IdxError, not an exhausted memory.
    """
    path = Path(path)
    limit = MAX_BYTES if limit is None else limit
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > limit:
                raise IdxError(f"{path}: {size} bytes, more than the {limit} an IDX file here may hold")
            raw = fh.read(limit + 1)
    except FileNotFoundError:
        raise IdxError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise IdxError(f"{path}: is a folder, not an IDX file") from None
    except OSError as exc:
        raise IdxError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > limit:  # a file that grew, or a device that does not report its size
        raise IdxError(f"{path}: more than the {limit} bytes an IDX file here may hold")
    if raw[:2] == GZIP_MAGIC:
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
                data = gz.read(limit + 1)
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            raise IdxError(f"{path}: truncated or corrupt gzip data ({exc})") from None
        if len(data) > limit:
            raise IdxError(f"{path}: decompresses to more than the {limit} bytes an IDX file here may hold")
        return data
    if path.suffix == ".gz":
        raise IdxError(f"{path}: not a gzip file (expected 1f 8b, found {raw[:2].hex() or 'nothing'})")
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, gzip'd or not."""
    return parse_idx(read_bytes(path), str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of ``array`` (any rank >= 1, one of the IDX dtypes)."""
    array = np.asarray(array)
    if array.ndim == 0 or array.ndim > 255:
        raise IdxError(f"cannot write a {array.ndim}-dimensional array as IDX (1 to 255 dimensions)")
    key = array.dtype.newbyteorder("=").str[1:]
    if key not in CODES:
        raise IdxError(
            f"cannot write dtype {array.dtype} as IDX (uint8, int8, int16, int32, float32, float64)"
        )
    if any(d > 0xFFFFFFFF for d in array.shape):
        raise IdxError(f"cannot write shape {array.shape} as IDX (each dimension must fit in 32 bits)")
    code = CODES[key]
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=DTYPES[code]).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as IDX, atomically; gzip'd when ``compress`` (default: when the name ends in .gz)."""
    path = Path(path)
    data = encode_idx(array)
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        data = gzip.compress(data, compresslevel=6, mtime=0)
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return path
