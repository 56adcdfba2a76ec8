"""The IDX reader and writer: round trips for every dtype and rank, each malformed case, and fuzzing."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fmnist.data.idx import DTYPES, encode_idx, parse_idx, read_bytes, read_idx, write_idx
from fmnist.errors import IdxError

FUZZ = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
IDX_DTYPES = ["u1", "i1", "i2", "i4", "f4", "f8"]
SHAPES = {1: (7,), 2: (3, 5), 3: (4, 28, 28), 4: (2, 3, 1, 5)}


def header(code: int, dims: tuple[int, ...]) -> bytes:
    return struct.pack(">HBB", 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims)


def random_array(dtype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype.startswith("f"):
        return rng.standard_normal(shape).astype(dtype) * 1e3
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("rank", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", IDX_DTYPES)
def test_round_trip_every_dtype_and_rank(tmp_path, dtype, rank, compress):
    array = random_array(dtype, SHAPES[rank], seed=rank)
    path = write_idx(tmp_path / ("a.idx.gz" if compress else "a.idx"), array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") is compress
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_writer_layout_is_big_endian_with_header():
    data = encode_idx(np.array([[1, 2, 3]], dtype=np.int16))
    assert data == bytes([0, 0, 0x0B, 2, 0, 0, 0, 1, 0, 0, 0, 3, 0, 1, 0, 2, 0, 3])


def test_big_endian_and_non_contiguous_input_round_trip():
    array = np.arange(24, dtype=">i4").reshape(4, 6)[:, ::2]
    np.testing.assert_array_equal(parse_idx(encode_idx(array)), array)


def test_special_floats_round_trip_bit_exact():
    array = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-300], dtype=np.float64)
    assert parse_idx(encode_idx(array)).tobytes() == array.tobytes()


def test_empty_dimension_round_trips():
    array = np.zeros((0, 28, 28), dtype=np.uint8)
    assert parse_idx(encode_idx(array)).shape == (0, 28, 28)


@pytest.mark.parametrize(
    "array",
    [np.zeros((), np.uint8), np.zeros(3, np.bool_), np.zeros(3, np.uint16), np.zeros(3, np.int64)],
    ids=["0-d", "bool", "uint16", "int64"],
)
def test_writer_rejects_what_idx_cannot_hold(array):
    with pytest.raises(IdxError, match="cannot write"):
        encode_idx(array)


def test_writer_rejects_dimension_over_32_bits():
    with pytest.raises(IdxError, match="32 bits"):
        encode_idx(np.zeros((0, 2**32), dtype=np.uint8))


def test_uint8_parse_is_a_view_and_wider_types_are_native():
    data = header(0x08, (3,)) + b"\x01\x02\x03"
    assert not parse_idx(data).flags.writeable  # a view of the bytes: no copy of 47 MB
    assert parse_idx(header(0x0C, (1,)) + b"\x00\x00\x01\x00")[0] == 256


GOOD = header(0x08, (2, 3)) + bytes(range(6))

MALFORMED = {
    "bad magic": (b"\x08\x03" + GOOD[2:], "bad magic"),
    "unknown dtype code": (b"\x00\x00\x0a\x02" + GOOD[4:], "unknown IDX dtype code 0x0a"),
    "zero dims": (b"\x00\x00\x08\x00", "0 dimensions"),
    "too short for header": (b"\x00\x00", "too short"),
    "empty": (b"", "too short"),
    "truncated header": (GOOD[:9], "truncated header"),
    "data too short": (GOOD[:-1], "length mismatch"),
    "data too long": (GOOD + b"\x00", "length mismatch"),
    "dims disagree with data": (header(0x08, (3, 3)) + bytes(6), "length mismatch"),
    "wide dtype length": (header(0x0E, (2,)) + bytes(12), "length mismatch"),
    "still gzipped": (gzip.compress(GOOD), "still gzip-compressed"),
    "more dims than numpy": (header(0x08, (1,) * 70) + b"\x00", "cannot hold"),
    "empty but huge": (header(0x08, (0, 2**32 - 1, 2**32 - 1)), "cannot hold"),
}


@pytest.mark.parametrize("data, message", MALFORMED.values(), ids=MALFORMED.keys())
def test_parse_rejects_malformed_bytes_naming_the_file(data, message):
    with pytest.raises(IdxError, match=message) as info:
        parse_idx(data, name="some/file.idx")
    assert str(info.value).startswith("some/file.idx: ")


# A gzip'd file is decompressed by content whatever its name, so "still gzipped" is a .gz-only case.
READ_CASES = [
    pytest.param(data, message, gz, id=f"{key}-{'gz' if gz else 'raw'}")
    for key, (data, message) in MALFORMED.items()
    for gz in (False, True)
    if gz or key != "still gzipped"
]


@pytest.mark.parametrize("data, message, gz", READ_CASES)
def test_read_idx_rejects_malformed_files_naming_the_path(tmp_path, data, message, gz):
    path = tmp_path / ("bad.idx.gz" if gz else "bad.idx")
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(IdxError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_gz(tmp_path):
    path = tmp_path / "t.gz"
    path.write_bytes(gzip.compress(GOOD * 100)[:-20])
    with pytest.raises(IdxError, match=r"t\.gz: truncated or corrupt gzip"):
        read_idx(path)


def test_corrupt_gzip_stream(tmp_path):
    data = bytearray(gzip.compress(bytes(range(256)) * 40))
    data[20:30] = b"\xff" * 10
    path = tmp_path / "c.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(IdxError, match=r"c\.gz: truncated or corrupt gzip"):
        read_idx(path)


def test_non_gzip_file_named_gz(tmp_path):
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(GOOD)  # a valid raw IDX under a .gz name
    with pytest.raises(IdxError, match=r"x-idx3-ubyte\.gz: not a gzip file \(expected 1f 8b, found 0000\)"):
        read_idx(path)


def test_empty_file_named_gz(tmp_path):
    path = tmp_path / "e.gz"
    path.write_bytes(b"")
    with pytest.raises(IdxError, match="not a gzip file.*found nothing"):
        read_idx(path)


def test_gzip_detected_by_content_not_name(tmp_path):
    path = tmp_path / "plain-name"
    path.write_bytes(gzip.compress(GOOD))
    np.testing.assert_array_equal(read_idx(path), np.arange(6, dtype=np.uint8).reshape(2, 3))


def test_doubly_gzipped_file_says_still_compressed(tmp_path):
    path = tmp_path / "twice.gz"
    path.write_bytes(gzip.compress(gzip.compress(GOOD)))
    with pytest.raises(IdxError, match="twice.gz: still gzip-compressed"):
        read_idx(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(IdxError, match="no such file"):
        read_idx(tmp_path / "nope.gz")
    with pytest.raises(IdxError, match="is a folder"):
        read_bytes(tmp_path)


def test_failed_write_keeps_the_old_file(tmp_path):
    path = write_idx(tmp_path / "keep.idx", np.arange(3, dtype=np.uint8))
    before = path.read_bytes()
    with pytest.raises(IdxError):
        write_idx(path, np.zeros(3, dtype=np.int64))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.idx"]  # no temporary file left


# --- fuzzing: no byte string may raise anything but IdxError ---------------------------------------


def parse_or_idx_error(data: bytes) -> None:
    try:
        result = parse_idx(data, "fuzz")
    except IdxError as exc:
        assert str(exc).startswith("fuzz: ")
    else:
        assert isinstance(result, np.ndarray)
        assert result.ndim == data[3] and result.dtype == DTYPES[data[2]].newbyteorder("=")


@FUZZ
@given(st.binary(max_size=300))
@example(header(0x08, (1,) * 70) + b"\x00")
@example(header(0x0B, (0, 2**32 - 1, 2**32 - 1, 2**32 - 1)))
def test_fuzz_parse_arbitrary_bytes(data):
    parse_or_idx_error(data)


@st.composite
def idx_headers(draw) -> bytes:
    """Headers that are nearly valid: any dtype byte, any rank, extreme dims, data of about the right size."""
    code = draw(st.sampled_from([*DTYPES, 0x00, 0x0A, 0xFF]))
    ndim = draw(st.one_of(st.integers(0, 5), st.integers(0, 255)))
    dims = draw(st.lists(st.sampled_from([0, 1, 2, 3, 28, 2**31, 2**32 - 1]), min_size=ndim, max_size=ndim))
    size = 1
    for d in dims:
        size *= d
    itemsize = DTYPES[code].itemsize if code in DTYPES else 1
    n = size * itemsize if size * itemsize <= 256 else draw(st.integers(0, 256))
    n = max(0, n + draw(st.sampled_from([0, 0, 0, -1, 1, -8])))
    return struct.pack(">HBB", 0, code, ndim) + struct.pack(f">{ndim}I", *dims) + bytes(n)


@st.composite
def mutated(draw, base: bytes) -> bytes:
    """``base`` with a few bytes overwritten, then possibly cut or extended."""
    data = bytearray(base)
    for _ in range(draw(st.integers(0, 4))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data) + 4))
    return bytes(data[:cut]) + draw(st.binary(max_size=max(0, cut - len(data))))


VALID = encode_idx(np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4))


@FUZZ
@given(st.one_of(idx_headers(), mutated(VALID), mutated(GOOD)))
def test_fuzz_parse_mutated_headers(data):
    parse_or_idx_error(data)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=200),
        st.binary(max_size=200).map(lambda b: b"\x1f\x8b" + b),
        mutated(gzip.compress(VALID, mtime=0)),
        idx_headers().map(gzip.compress),
    )
)
def test_fuzz_read_gz_path(fuzz_dir, data):
    path = fuzz_dir / "fuzz-idx3-ubyte.gz"
    path.write_bytes(data)
    try:
        result = read_idx(path)
    except IdxError as exc:
        assert str(path) in str(exc)
    else:
        assert isinstance(result, np.ndarray)


@settings(deadline=None, max_examples=100)
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.dtype(d) for d in IDX_DTYPES]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6),
    )
)
def test_fuzz_round_trip(array):
    """Any array of an IDX dtype and rank 1..4 survives encode -> parse bit for bit."""
    back = parse_idx(encode_idx(array))
    assert back.shape == array.shape and back.dtype == array.dtype
    assert back.tobytes() == np.ascontiguousarray(array).tobytes()
