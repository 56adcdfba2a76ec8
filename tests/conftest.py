"""Fixtures shared by the whole suite.

- Every test runs with ``$FMNIST_CACHE`` in a fresh temporary folder and without ``$FMNIST_DATA_DIR``,
  ``$FMNIST_MIRROR`` or ``$FMNIST_NO_SYSTEM_DATA``, so no test sees or changes the user's cache.
- ``tiny_idx_dir``: a small fake data set in the real IDX format (.gz), 100 train and 50 test
  28x28 uint8 images, 10 classes, each class marked by a bright band so a model can learn it.
- ``register_dataset`` / ``tiny_spec``: register such a folder as a data set, with checksums computed
  from its files, so ``locate`` / ``load_dataset`` / ``fmnist.cli.main`` accept it by name.
- ``loopback``: a threaded HTTP server on 127.0.0.1 serving scripted replies (good, truncated,
  corrupted, 404, Range-resumable), recording each request.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from fmnist.data.idx import write_idx
from fmnist.data.registry import DATASETS, FASHION, DatasetSpec, Resource

TINY_COUNTS = {"train": 100, "t10k": 50}  # 10 and 5 images per class
TINY_FILES = {key: res.filename for key, res in FASHION.resources.items()}  # the published names


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FMNIST_CACHE", str(tmp_path_factory.mktemp("fmnist-cache")))
    for var in ("FMNIST_DATA_DIR", "FMNIST_MIRROR", "FMNIST_NO_SYSTEM_DATA"):
        monkeypatch.delenv(var, raising=False)


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
