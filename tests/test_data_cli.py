"""Bad input through the real command: one line on stderr, "fmnist: error: ...", non-zero exit, no traceback.

The registered Fashion-MNIST spec is used through subprocesses; cases that need a data set whose
checksums match malformed files (so that the header and count checks behind verification are
reached) register a fake spec and call ``fmnist.cli.main`` in-process.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error
from fmnist.cli import build_parser, main
from fmnist.data import load_dataset, load_mnist
from fmnist.data.idx import encode_idx
from fmnist.data.registry import FASHION
from fmnist.errors import DataError, IdxError

FILES = {key: res.filename for key, res in FASHION.resources.items()}  # the tiny set uses them too
FMNIST = Path(sys.executable).with_name("fmnist")  # the installed console script


def fmnist(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(FMNIST), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **env},
        timeout=120,
    )


def check_cli_error(proc: subprocess.CompletedProcess, *fragments: str, only_line: bool = True) -> str:
    return assert_one_line_error(proc.stderr, proc.returncode, *fragments, only_line=only_line)


def gz_idx(array: np.ndarray) -> bytes:
    return gzip.compress(encode_idx(array), mtime=0)


@pytest.fixture
def user_dir(tmp_path) -> Path:
    """A --data-dir with placeholders for all four files; each test writes the one under test."""
    d = tmp_path / "data"
    d.mkdir()
    for name in FILES.values():
        (d / name).write_bytes(b"placeholder")
    return d


# --- the registered spec, through the installed command ------------------------------------------------


def test_missing_folder(tmp_path):
    proc = fmnist("data", "verify", "--data-dir", str(tmp_path / "nope"))
    check_cli_error(proc, str(tmp_path / "nope"), "data folder does not exist")


def test_data_dir_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["data", "info", "--data-dir", str(tmp_path / "f")]) == 2
    assert_one_line_error(capsys.readouterr().err, 2, str(tmp_path / "f"), "not a folder")


BAD_TRAIN_IMAGES = {
    "truncated-gz": (lambda real: real[:1000], "truncated or corrupt gzip data"),
    "non-gzip": (lambda real: b"<html>403 Forbidden</html>", "not a gzip file (expected 1f 8b, found 3c68)"),
    "wrong-magic": (lambda real: gzip.compress(b"\x08\x03\x00\x00" + bytes(1000)), "checksum mismatch"),
    "length-mismatch": (
        lambda real: gzip.compress(struct.pack(">HBBIII", 0, 8, 3, 60000, 28, 28) + bytes(100)),
        "checksum mismatch",
    ),
}


def real_file(fashion_dir: Path, key: str) -> Path:
    """One of the real files where `fmnist data fetch` found it: gzip'd as published, or decompressed."""
    name = FILES[key]
    return next(p for p in (fashion_dir / name, fashion_dir / name[:-3]) if p.is_file())


def real_gz_head(fashion_dir: Path, key: str, n: int = 2000) -> bytes:
    """The first ``n`` bytes of the real file as a .gz (gzip'd here if it is kept decompressed)."""
    with open(real_file(fashion_dir, key), "rb") as fh:
        head = fh.read(200_000)
    return (head if head[:2] == b"\x1f\x8b" else gzip.compress(head, mtime=0))[:n]


def write_bad_train_images(user_dir: Path, make, fashion_dir: Path) -> Path:
    bad = user_dir / FILES["train-images"]
    bad.write_bytes(make(real_gz_head(fashion_dir, "train-images")))
    return bad


@pytest.mark.parametrize("make, message", BAD_TRAIN_IMAGES.values(), ids=BAD_TRAIN_IMAGES.keys())
def test_bad_file_in_data_dir(user_dir, make, message, fashion_dir):
    bad = write_bad_train_images(user_dir, make, fashion_dir)
    before = bad.read_bytes()
    proc = fmnist("data", "verify", "--data-dir", str(user_dir))
    check_cli_error(proc, f"fmnist: error: {bad}: ", message)
    assert bad.read_bytes() == before
    assert sorted(p.name for p in user_dir.iterdir()) == sorted(FILES.values())


@pytest.mark.parametrize("make, message", BAD_TRAIN_IMAGES.values(), ids=BAD_TRAIN_IMAGES.keys())
@pytest.mark.parametrize("command", ["info", "export", "sprite"])
def test_bad_file_in_data_dir_in_process(user_dir, capsys, make, message, command, fashion_dir):
    """The same through the commands that load the data (in-process: a subprocess each would be slow)."""
    bad = write_bad_train_images(user_dir, make, fashion_dir)
    before = bad.read_bytes()
    out = [] if command == "info" else ["--out", str(user_dir.parent / "out")]
    assert main(["data", command, "--data-dir", str(user_dir), *out]) == 2
    captured = capsys.readouterr()
    assert_one_line_error(captured.err, 2, f"fmnist: error: {bad}: ", message)
    assert captured.out == ""
    assert bad.read_bytes() == before
    assert not (user_dir.parent / "out").exists()  # nothing written
    assert bad.read_bytes() == before
    assert sorted(p.name for p in user_dir.iterdir()) == sorted(FILES.values())


def test_checksum_mismatch_of_a_real_file(tmp_path, fashion_dir):
    """A corrupted copy of a real file (one label changed) is named, refused, and left as it was."""
    d = tmp_path / "copy"
    d.mkdir()
    for key in FILES:
        real = real_file(fashion_dir, key)
        (d / real.name).symlink_to(real)
    labels = d / real_file(fashion_dir, "train-labels").name
    raw = labels.read_bytes()
    content = bytearray(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    content[8] = (content[8] + 1) % 10
    labels.unlink()  # the link, not the real file
    bad = d / FILES["train-labels"]
    bad.write_bytes(gzip.compress(bytes(content)))
    before = bad.read_bytes()
    proc = fmnist("data", "verify", "--data-dir", str(d))
    line = check_cli_error(
        proc, str(bad), "checksum mismatch: content MD5", "9018921c3c673c538a1fc5bad174d6f9"
    )
    assert "not used" in line
    assert bad.read_bytes() == before
    assert not list(d.glob("*.bad-*"))


def test_unknown_dataset_name():
    proc = fmnist("data", "info", "--dataset", "nope")
    check_cli_error(proc, "unknown data set 'nope'", "fashion", "mnist")


def test_unreachable_mirror(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mirror = f"http://127.0.0.1:{port}/"
    cache = Path(os.environ["FMNIST_CACHE"])
    proc = fmnist(
        "data", "fetch", "--mirror", mirror, "--retries", "1", "--timeout", "2", FMNIST_NO_SYSTEM_DATA="1"
    )
    # "downloading ..." notes may precede the error; the error is the last line and the only one of its kind
    line = check_cli_error(proc, "could not download train-images-idx3-ubyte.gz", only_line=False)
    assert f"{mirror}train-images-idx3-ubyte.gz" in line
    assert "after 1 tries" in line
    assert not (cache / "fashion" / "raw" / "train-images-idx3-ubyte.gz").exists()


def test_not_found_without_download():
    proc = fmnist("data", "verify", FMNIST_NO_SYSTEM_DATA="1")
    check_cli_error(proc, "Fashion-MNIST not found", "fmnist data fetch")


@pytest.mark.parametrize(
    "args, message",
    [
        (["data", "export", "--limit", "0"], "--limit must be a positive"),
        (["data", "fetch", "--retries", "0"], "--retries must be at least 1"),
        (["data", "sprite", "--columns", "0"], "--columns must be positive"),
    ],
)
def test_nonsense_options(capsys, args, message):
    assert main(args) == 2
    assert_one_line_error(capsys.readouterr().err, 2, message)


def test_unknown_format_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["data", "export", "--format", "xls"])
    assert info.value.code == 2 and "invalid choice: 'xls'" in capsys.readouterr().err


# --- header and count checks behind verification: a fake spec, in-process ---------------------------


def tiny_with(tmp_path: Path, tiny_idx_dir: Path, replace: dict[str, bytes]) -> Path:
    d = tmp_path / "malformed"
    d.mkdir()
    for key, name in FILES.items():
        (d / name).write_bytes(replace.get(key, (tiny_idx_dir / name).read_bytes()))
    return d


MALFORMED_BUT_REGISTERED = {
    "wrong-magic": ({"train-images": gzip.compress(b"\x00\x01" + bytes(10))}, "bad magic number"),
    "length-mismatch": (
        {"t10k-images": gzip.compress(struct.pack(">HBBIII", 0, 8, 3, 50, 28, 28) + bytes(50 * 784 - 1))},
        "length mismatch: header declares 50x28x28 uint8 values (39200 bytes) but the file holds 39199",
    ),
    "count-mismatch": (
        {"train-labels": gz_idx(np.zeros(99, np.uint8))},
        "100 images but",
    ),
    "label-out-of-range": ({"t10k-labels": gz_idx(np.full(50, 10, np.uint8))}, "label 10 out of range"),
    "labels-not-1d": ({"t10k-labels": gz_idx(np.zeros((50, 1), np.uint8))}, "labels must be 1-D"),
    "images-not-3d": ({"t10k-images": gz_idx(np.zeros((50, 784), np.uint8))}, "images must be 3-D"),
}


@pytest.mark.parametrize(
    "replace, message", MALFORMED_BUT_REGISTERED.values(), ids=MALFORMED_BUT_REGISTERED.keys()
)
def test_malformed_files_with_matching_checksums(
    tmp_path, tiny_idx_dir, register_dataset, capsys, replace, message
):
    d = tiny_with(tmp_path, tiny_idx_dir, replace)
    register_dataset(d)  # the checksums are those of the malformed files: verification passes
    with pytest.raises(DataError, match=re.escape(message)):
        load_dataset("tiny", d)
    assert main(["data", "info", "--dataset", "tiny", "--data-dir", str(d)]) == 2
    captured = capsys.readouterr()
    line = assert_one_line_error(captured.err, 2, message)
    key = next(iter(replace))
    assert str(d / FILES[key]) in line
    assert captured.out == ""


def test_cli_main_reports_checksum_mismatch_in_process(tmp_path, tiny_idx_dir, tiny_spec, capsys):
    d = tiny_with(tmp_path, tiny_idx_dir, {"t10k-labels": gz_idx(np.zeros(50, np.uint8))})
    assert main(["data", "verify", "--dataset", "tiny", "--data-dir", str(d)]) == 2
    assert_one_line_error(capsys.readouterr().err, 2, str(d / FILES["t10k-labels"]), "checksum mismatch")


# --- load_mnist: the README drop-in checks headers and counts too ------------------------------------


@pytest.mark.parametrize(
    "replace, error, message",
    [
        ({"train-labels": gz_idx(np.zeros(99, np.uint8))}, DataError, "100 images but .* holds 99 labels"),
        ({"train-images": gzip.compress(b"\x00\x01\x08\x03" + bytes(12))}, IdxError, "bad magic"),
        ({"train-images": b"GIF89a"}, IdxError, "not a gzip file"),
        ({"train-images": gz_idx(np.zeros((100, 28, 28), np.int16))}, DataError, "expected unsigned-byte"),
    ],
    ids=["counts", "magic", "non-gzip", "dtype"],
)
def test_load_mnist_rejects(tmp_path, tiny_idx_dir, replace, error, message):
    d = tiny_with(tmp_path, tiny_idx_dir, replace)
    with pytest.raises(error, match=message):
        load_mnist(d, "train")


def test_load_mnist_missing_folder_and_kind(tmp_path, tiny_idx_dir):
    with pytest.raises(DataError, match="data folder does not exist"):
        load_mnist(tmp_path / "nope")
    with pytest.raises(IdxError, match="valid-labels-idx1-ubyte.gz: no such file"):
        load_mnist(tiny_idx_dir, "valid")


# --- help ---------------------------------------------------------------------------------------------


def data_actions() -> list[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    data = sub.choices["data"]
    dsub = next(a for a in data._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(dsub.choices)


def test_data_actions_are_all_there():
    assert data_actions() == ["export", "fetch", "info", "sprite", "verify"]


def test_installed_command_help():
    proc = fmnist("--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: fmnist") and "Example" in proc.stdout and "data" in proc.stdout


# Every command's and action's --help example: tests/test_promises.py (it walks the whole parser).
