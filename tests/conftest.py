"""Fixtures shared by the whole suite.

- Every test runs with ``$FMNIST_CACHE`` in a fresh temporary folder and without ``$FMNIST_DATA_DIR``,
  ``$FMNIST_MIRROR`` or ``$FMNIST_NO_SYSTEM_DATA``, so no test sees or changes the user's cache (but
  ``fashion_dir``, which looks for the real files there exactly as ``fmnist data fetch`` does).
- ``tiny_idx_dir``: a small fake data set in the real IDX format (.gz), 100 train and 50 test
  28x28 uint8 images, 10 classes, each class marked by a bright band so a model can learn it.
- ``register_dataset`` / ``tiny_spec``: register such a folder as a data set, with checksums computed
  from its files, so ``locate`` / ``load_dataset`` / ``fmnist.cli.main`` accept it by name.
- ``loopback``: a threaded HTTP server on 127.0.0.1 serving scripted replies (good, truncated,
  corrupted, 404, Range-resumable), recording each request.
- The real Fashion-MNIST, found where ``fmnist data fetch`` put it (``make test`` runs that first):
  ``fashion_dir`` (its folder), ``data_cache`` (one decompressed-array cache for the session) and
  ``real_data`` (points a test, and the processes it starts, at both). Missing data fails, never skips.
  ``fashion_gz_dir``: the same files as the four published ``.gz`` (what the README reader reads).
- Helpers for tests that run the command line: ``fmnist_cmd`` (a subprocess), ``one_cpu`` (pin a
  child to one CPU), ``assert_one_line_error``; ``torch_threads`` / ``one_torch_thread``.
- Small helpers, one home each (``from conftest import ...``): ``free_port``, ``snapshot`` (a folder's
  files and bytes), ``corrupted`` (one byte flipped), and the tiny pictures ``encode`` (an image or a
  uint8 array as the bytes of a PNG/JPEG/... file) and ``header_png`` (a PNG whose header claims any
  size: a decompression-bomb stand-in); fixtures ``resource`` / ``good_bytes`` (the tiny set's
  train-images entry and bytes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import io
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from fmnist.data.idx import write_idx
from fmnist.data.registry import DATASETS, FASHION, DatasetSpec, Resource

pytest_plugins = ["conftest_model"]  # the trained-run fixtures (predict / export / serve / page / evaluate)

# The environment pytest started in (before any test's monkeypatching): where `fmnist data fetch`,
# run by `make test` just before, looked for and put the data.
STARTUP_ENV = dict(os.environ)
FMNIST_VARS = ("FMNIST_DATA_DIR", "FMNIST_CACHE", "FMNIST_MIRROR", "FMNIST_NO_SYSTEM_DATA")

TINY_COUNTS = {"train": 100, "t10k": 50}  # 10 and 5 images per class
TINY_FILES = {key: res.filename for key, res in FASHION.resources.items()}  # the published names


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FMNIST_CACHE", str(tmp_path_factory.mktemp("fmnist-cache")))
    monkeypatch.setenv(
        "KERAS_HOME", str(tmp_path_factory.mktemp("keras-home"))
    )  # a user's ~/.keras is not used
    for var in ("FMNIST_DATA_DIR", "FMNIST_MIRROR", "FMNIST_NO_SYSTEM_DATA"):
        monkeypatch.delenv(var, raising=False)


# ---------------------------------------------------------------- the real data, wherever `fmnist data fetch` put it


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    """The folder holding the four verified Fashion-MNIST files, found by the project's own source
    resolution (``$FMNIST_DATA_DIR``, the cache, the system copy) in the environment pytest started in,
    as ``fmnist data fetch`` found or downloaded them. Missing data is a failure, not a skip."""
    from fmnist.data.sources import locate
    from fmnist.errors import DataError

    with pytest.MonkeyPatch.context() as mp:
        for var in FMNIST_VARS:
            if var in STARTUP_ENV:
                mp.setenv(var, STARTUP_ENV[var])
            else:
                mp.delenv(var, raising=False)
        try:
            return locate("fashion", download_missing=False, quiet=True).directory
        except DataError as exc:
            missing = str(exc)
    pytest.fail(f"the real Fashion-MNIST is needed: run `fmnist data fetch` (`make test` does): {missing}")


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
    """One ``$FMNIST_CACHE`` for every test on the real data: the files are unpacked once per session."""
    return tmp_path_factory.mktemp("fmnist-cache-real")


@contextlib.contextmanager
def real_data_env(fashion_dir: Path, data_cache: Path) -> Iterator[None]:
    """``$FMNIST_DATA_DIR`` = the real data, ``$FMNIST_CACHE`` = the session's cache (for session fixtures)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FMNIST_DATA_DIR", str(fashion_dir))
        mp.setenv("FMNIST_CACHE", str(data_cache))
        yield


@pytest.fixture
def real_data(fashion_dir, data_cache, monkeypatch) -> Path:
    """Point this test, and every process it starts with ``os.environ``, at the real data."""
    monkeypatch.setenv("FMNIST_DATA_DIR", str(fashion_dir))
    monkeypatch.setenv("FMNIST_CACHE", str(data_cache))
    return fashion_dir


@pytest.fixture(scope="session")
def fashion_gz_dir(fashion_dir, tmp_path_factory) -> Path:
    """The real data as the four published ``.gz`` files, which the README reader (and ``load_mnist``,
    its twin) read: ``fashion_dir`` itself when it holds them (the cache, Debian's copy), else a folder
    with the ``.gz`` it holds linked and the decompressed files it holds (a ``$FMNIST_DATA_DIR`` may)
    gzip'd."""
    names = [res.filename for res in FASHION.resources.values()]
    if all((fashion_dir / name).is_file() for name in names):
        return fashion_dir
    out = tmp_path_factory.mktemp("fashion-gz")
    for name in names:
        if (fashion_dir / name).is_file():
            (out / name).symlink_to(fashion_dir / name)
            continue
        with open(fashion_dir / name[:-3], "rb") as raw, gzip.open(out / name, "wb", compresslevel=1) as gz:
            shutil.copyfileobj(raw, gz)
    return out


# ---------------------------------------------------------------- threads, processes, one-line errors


@contextlib.contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run torch on ``n`` threads: on two shared cores, two spinning OpenMP threads per process
    are up to 10x slower than one (measured: 50 training steps 10.5 s vs 1.1 s at load 10)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)  # fit() sets the thread count too: leave the process as we found it


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Opt-in per module: ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    with torch_threads(1):
        yield


def one_cpu() -> None:
    """``preexec_fn`` that pins a child to one CPU, so torch there uses one thread (commands without
    --threads use every CPU they may run on; with other jobs on two cores a second thread mostly waits)."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


@contextlib.contextmanager
def pinned_to_one_cpu() -> Iterator[None]:
    """The same for this (calling) thread, in-process: ``set_threads(0)`` then means one thread."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        with torch_threads(1):
            yield
    finally:
        os.sched_setaffinity(0, before)


def fmnist_cmd(
    *args: str, env: dict | None = None, cwd: Path | None = None, pin: bool = False, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -m fmnist ARGS`` in a child with this test's environment (plus ``env``)."""
    return subprocess.run(
        [sys.executable, "-m", "fmnist", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=timeout,
        preexec_fn=one_cpu if pin else None,
    )


def assert_one_line_error(
    stderr: str, returncode: int, *fragments: str, only_line: bool = True, prefix: str = "fmnist: error:"
) -> str:
    """The promise for bad input: a non-zero exit, no traceback, and one ``fmnist: error: ...`` line
    holding every fragment; with ``only_line`` that line is the whole of stderr, else notes may precede it
    (it is still the last line and the only error). Returns the line."""
    assert returncode != 0, f"exit status 0; stderr: {stderr}"
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith(prefix)]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    if only_line:
        assert len(lines) == 1, stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def free_port() -> int:
    """A loopback TCP port free a moment ago (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes): equal before and after = nothing changed."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def corrupted(data: bytes) -> bytes:
    """``data`` with one byte in the middle flipped: same size, wrong checksum."""
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0xFF
    return bytes(bad)


# ---------------------------------------------------------------- tiny pictures


def encode(picture, fmt: str = "PNG", **options) -> bytes:
    """``picture`` (a PIL image, or a uint8 array for ``Image.fromarray``) as the bytes of a ``fmt`` file,
    as a user would upload it; ``options`` go to Pillow's ``save`` (quality, compress_level, ...)."""
    from PIL import Image

    image = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def header_png(width: int, height: int, colour_type: int = 0, depth: int = 8) -> bytes:
    """A valid PNG whose header claims ``width`` x ``height`` (colour type 0: grey, 2: RGB, 6: RGBA) and
    whose data is a 16-byte stub: a decompression bomb's header without its cost to build."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


# ---------------------------------------------------------------- the tiny fake data set


def make_tiny_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 28, 28) uint8 noise in 0..63 with a 255 band at rows 4+2c, 5+2c for class c; (n,) uint8 labels."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
    images = rng.integers(0, 64, size=(n, 28, 28), dtype=np.uint8)
    rows = 4 + 2 * labels.astype(int)
    for dr in (0, 1):
        images[np.arange(n)[:, None], (rows + dr)[:, None], np.arange(4, 24)] = 255
    return images, labels


@pytest.fixture
def tiny_idx_dir(tmp_path) -> Path:
    """A folder holding the four files of a tiny fake data set, gzip'd IDX as published."""
    root = tmp_path / "tiny"
    for seed, (kind, n) in enumerate(TINY_COUNTS.items()):
        images, labels = make_tiny_split(n, seed)
        write_idx(root / TINY_FILES[f"{kind}-images"], images)
        write_idx(root / TINY_FILES[f"{kind}-labels"], labels)
    return root


def resources_for(directory: Path) -> dict[str, Resource]:
    """Resources whose checksums are those of the four files in ``directory``."""
    out = {}
    for key, filename in TINY_FILES.items():
        raw = (directory / filename).read_bytes()
        out[key] = Resource(
            filename, hashlib.md5(raw).hexdigest(), hashlib.md5(gzip.decompress(raw)).hexdigest(), len(raw)
        )
    return out


@pytest.fixture
def register_dataset(monkeypatch):
    """``register_dataset(directory, name="tiny", **fields)``: add a data set whose files are those in ``directory``."""

    def register(directory: Path, name: str = "tiny", **fields) -> DatasetSpec:
        spec = DatasetSpec(
            name=name,
            title=f"Tiny ({name})",
            classes=tuple(f"class{i}" for i in range(10)),
            resources=resources_for(directory),
            mirrors=(),
            system_dirs=(),
            counts=dict(TINY_COUNTS),
        )
        spec = dataclasses.replace(spec, **fields)
        monkeypatch.setitem(DATASETS, name, spec)
        return spec

    return register


@pytest.fixture
def tiny_spec(tiny_idx_dir, register_dataset) -> DatasetSpec:
    """The tiny data set registered as ``tiny`` (no mirrors, no system copy)."""
    return register_dataset(tiny_idx_dir)


@pytest.fixture
def resource(tiny_spec) -> Resource:
    """The tiny set's train-images entry (about 60 kB of gzip'd noise: several read chunks)."""
    return tiny_spec.resources["train-images"]


@pytest.fixture
def good_bytes(tiny_idx_dir, resource) -> bytes:
    """The bytes of that file, as a mirror should serve them."""
    return (tiny_idx_dir / resource.filename).read_bytes()


@dataclasses.dataclass
class Reply:
    """One scripted HTTP answer."""

    body: bytes = b""
    status: int = 200
    send: int | None = None  # bytes actually sent before closing; Content-Length still promises all
    ranges: bool = True  # answer "Range: bytes=N-" with 206 and the rest of the body


class Loopback:
    """``serve(path, *replies)``: successive requests for ``path`` get the replies in turn, the last repeats."""

    Reply = Reply  # so tests need not import from conftest

    def __init__(self) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def serve(self, path: str, *replies: Reply) -> None:
        self.routes[path.lstrip("/")] = list(replies)

    def _handler(self):
        loop = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the http.server API)
                path, want = self.path.lstrip("/"), self.headers.get("Range")
                loop.requests.append((path, want))
                replies = loop.routes.get(path)
                if not replies:
                    return self.send_error(404)
                reply = replies.pop(0) if len(replies) > 1 else replies[0]
                if reply.status != 200:
                    return self.send_error(reply.status)
                body, start = reply.body, 0
                match = re.fullmatch(r"bytes=(\d+)-", want or "")
                if match and reply.ranges:
                    start = int(match.group(1))
                    if start >= len(body):
                        return self.send_error(416)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                end = len(body) if reply.send is None else start + reply.send
                self.wfile.write(body[start:end])  # HTTP/1.0: the connection closes after this

            def log_message(self, *args):
                pass

        return Handler


@pytest.fixture
def loopback():
    loop = Loopback()
    thread = threading.Thread(target=loop.server.serve_forever, args=(0.01,), daemon=True)  # quick shutdown
    thread.start()
    yield loop
    loop.server.shutdown()
    loop.server.server_close()


def sigint_default() -> None:
    """``preexec_fn`` for a child that must see Ctrl-C: a shell's background job (``cmd &``, as CI may
    run the suite) starts with SIGINT ignored, and Python keeps an ignored SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def one_blas_thread():
    """One BLAS / OpenMP thread: tiny matrices gain nothing from more, and a busy machine makes them wait."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


# A tiny learnable data set for the scikit-learn benchmark tests (test_bench_sklearn, test_baselines_table3).
def band_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 28, 28) uint8 noise with a bright band at rows 4+2c for class c; balanced labels."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
    images = rng.integers(0, 64, size=(n, 28, 28), dtype=np.uint8)
    for i, c in enumerate(labels):
        images[i, 4 + 2 * c : 6 + 2 * c, 4:24] = 255
    return images, labels


@pytest.fixture
def tiny_npz(tmp_path) -> Path:
    x_train, y_train = band_images(300, 0)
    x_test, y_test = band_images(100, 1)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_t10k=x_test, y_t10k=y_test)
    return path
