"""Issue #13 (trust), the data stage: no leaked temp files, no destroyed user files, bounded downloads.

Each test is one finding's reproduction turned into an assertion:
- the array cache on a full disk (a write that fails with ENOSPC) leaves no temp file and does not
  fail the command;
- a mirror that streams forever, announces a huge file, trickles a byte at a time or keeps serving
  wrong bytes is abandoned within bounds (size cap, stall floor, a few quarantined copies at most);
- ``fmnist data export`` never deletes or mixes into files it did not write, never writes over its
  own input, gives new folders the usual permissions, and cleans up on SIGTERM/SIGINT;
- hostile options of ``fmnist data ...`` are one line each.
Downloads are tested against a loopback server on 127.0.0.1 only.
"""

from __future__ import annotations

import dataclasses
import errno
import gzip
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error, corrupted, sigint_default, snapshot
from fmnist.cli import main
from fmnist.data import load_dataset, loader
from fmnist.data.checksums import CONTENT, OFFICIAL, verify_file
from fmnist.data.download import KEEP_BAD, STALL_BYTES, download
from fmnist.data.export import export, read_csv
from fmnist.data.export_png import MANIFEST, read_png_tree
from fmnist.data.registry import DATASETS, FASHION, MNIST
from fmnist.errors import ConfigError, DataError, DownloadError
from fmnist.fsio import cleanup_on_signals

DEBIAN = Path(FASHION.system_dirs[0])  # Debian/Ubuntu's dataset-fashion-mnist: the .gz recompressed
NAME = FASHION.resources["train-images"].filename  # the tiny set uses the published names
FAST = dict(retries=1, timeout=2.0, backoff=0.0, progress=False)


def one_line(stderr: str, *fragments: str) -> str:
    """stderr is exactly one line (no traceback) holding every fragment: the note of a command that
    succeeds (errors: conftest's ``assert_one_line_error``)."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def temp_names(root: Path) -> list[str]:
    """Every hidden temporary (atomic-write, mkdtemp, moved-aside) name anywhere under ``root``."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob(".*")
        if p.name.endswith((".tmp", ".tmp.npy")) or ".old-" in p.name or ".tmp" in p.name
    )


# --- finding 1: the array cache on a full disk -----------------------------------------------------------


@pytest.fixture
def full_disk(monkeypatch):
    """np.save that writes a few bytes and then fails as a full disk does; records the files it touched."""
    touched: list[str] = []

    def save(file, arr, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)):  # the old code passed a path: np.save creates the file
            fh = open(file, "wb")  # noqa: SIM115 (closed below, like a failing np.save would)
        else:
            fh = file
        fh.write(b"\x93NUMPY partial")
        fh.flush()
        touched.append(fh.name)
        assert os.path.exists(fh.name)
        if fh is not file:
            fh.close()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(loader.np, "save", save)
    monkeypatch.setattr(loader, "_cache_note_given", False)
    return touched


def test_cache_write_on_a_full_disk_leaves_no_temp_file_and_still_loads(
    tiny_spec, tiny_idx_dir, full_disk, capsys
):
    from fmnist.data.sources import cache_root

    for _ in range(2):  # the finding: every run added one more temp file
        ds = load_dataset("tiny", tiny_idx_dir)
        assert ds.train.images.shape == (100, 28, 28) and len(ds.test) == 50
        np.testing.assert_array_equal(ds.train.images, loader.read_idx(tiny_idx_dir / NAME))
    assert len(full_disk) == 8  # four arrays, twice: the write was tried (and failed) every time
    assert not any(os.path.exists(p) for p in full_disk)
    arrays = cache_root() / "tiny" / "arrays"
    assert list(arrays.iterdir()) == []  # no temp file, no half-written cache file
    err = capsys.readouterr().err
    one_line(err, "note: cannot write the array cache", "No space left on device", "reading without it")


def test_cli_info_on_a_full_cache_is_a_note_and_exit_0(tiny_spec, tiny_idx_dir, full_disk, capsys):
    assert main(["data", "info", "--dataset", "tiny", "--data-dir", str(tiny_idx_dir)]) == 0
    out, err = capsys.readouterr()
    assert "150 images" in out
    one_line(err, "reading without it")
    assert not any(os.path.exists(p) for p in full_disk)


def test_stale_cache_temps_of_dead_processes_are_swept(tiny_spec, tiny_idx_dir):
    from fmnist.data.sources import cache_root

    arrays = cache_root() / "tiny" / "arrays"
    arrays.mkdir(parents=True)
    old = [arrays / ".train-images-abc.npy.4242.tmp.npy", arrays / ".train-images-abc.npy.k3j2.tmp"]
    fresh = arrays / ".t10k-images-abc.npy.x9y8.tmp"  # a concurrent writer's: left alone
    for p in [*old, fresh]:
        p.write_bytes(b"junk")
    for p in old:
        os.utime(p, (time.time() - 7200, time.time() - 7200))
    load_dataset("tiny", tiny_idx_dir)
    assert not any(p.exists() for p in old) and fresh.exists()
    assert len(list(arrays.glob("*.npy"))) == 4  # and the cache itself was written


# --- finding 2: bounded downloads --------------------------------------------------------------------------


class Hostile:
    """A loopback HTTP server whose routes are functions of the request handler; records bytes sent."""

    def __init__(self) -> None:
        self.routes: dict = {}
        self.sent: dict[str, int] = {}
        self.requests: list[str] = []
        self.stop = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def _handler(self):
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the http.server API)
                path = self.path.lstrip("/")
                host.requests.append(path)
                route = host.routes.get(path)
                if route is None:
                    return self.send_error(404)
                try:
                    route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up: what the test wants

            def send(self, data: bytes) -> None:
                self.wfile.write(data)
                host.sent[self.path.lstrip("/")] = host.sent.get(self.path.lstrip("/"), 0) + len(data)

            def log_message(self, *args):
                pass

        return Handler

    # routes
    @staticmethod
    def forever(h) -> None:
        """200 without a Content-Length, then random bytes until the client hangs up."""
        block = np.random.default_rng(0).bytes(1 << 16)
        h.send_response(200)
        h.end_headers()
        while not h.server.stopping.is_set():
            h.send(block)

    @staticmethod
    def huge(h) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(10**12))
        h.end_headers()
        h.send(b"\x1f\x8b" + b"\0" * 1000)

    @staticmethod
    def trickle(body: bytes, delay: float, piece: int = 1):
        def route(h) -> None:
            h.send_response(200)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            for i in range(0, len(body), piece):
                if h.server.stopping.is_set():
                    return
                h.send(body[i : i + piece])
                time.sleep(delay)

        return route

    @staticmethod
    def fixed(body: bytes):
        def route(h) -> None:
            h.send_response(200)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.send(body)

        return route


@pytest.fixture
def hostile():
    host = Hostile()
    host.server.stopping = host.stop
    thread = threading.Thread(target=host.server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield host
    host.stop.set()
    host.server.shutdown()
    host.server.server_close()


@pytest.fixture(params=["found", "debian"])
def real_copy(request, fashion_dir) -> Path:
    """The real files where `fmnist data fetch` found them (``fashion_dir``), and Debian's copy, whose .gz
    are recompressed (other bytes and sizes than the official ones; they verify by content). `make test`
    installs Debian's package only as root with apt-get, else it downloads: without the package the
    Debian case skips, saying so (the found copy is then the official download, tested the same way)."""
    if request.param == "found":
        return fashion_dir
    if not DEBIAN.is_dir():
        pytest.skip(
            f"environment limit: Debian's dataset-fashion-mnist is not installed ({DEBIAN}); "
            "`make test` installs it only as root with apt-get"
        )
    return DEBIAN


def real_file(directory: Path, res) -> Path:
    """The published .gz, else the decompressed file (a $FMNIST_DATA_DIR may hold those)."""
    gz = directory / res.filename
    return gz if gz.is_file() else directory / res.filename[:-3]


def test_size_cap_covers_the_official_sizes_and_little_more():
    for spec in (FASHION, MNIST):
        for res in spec.resources.values():
            assert res.content_size is not None
            assert res.size <= res.max_download_bytes <= res.content_size * 1.02 + 8192


def test_size_cap_covers_the_real_copies(real_copy):
    for res in FASHION.resources.values():
        path = real_file(real_copy, res)
        assert path.stat().st_size <= res.max_download_bytes
        content = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        assert len(content) == res.content_size


def test_endless_stream_stops_at_the_cap_and_removes_the_part(tmp_path, hostile, resource):
    hostile.routes[NAME] = hostile.forever
    dest = tmp_path / "dl"
    start = time.monotonic()
    with pytest.raises(DownloadError, match=f"more than the {resource.max_download_bytes}-byte cap"):
        download(resource, dest, [hostile.url], **{**FAST, "retries": 3})
    assert time.monotonic() - start < 10
    assert list(dest.iterdir()) == []  # no .part, no final file
    assert hostile.requests == [NAME]  # over the cap is not retried on the same mirror


def test_endless_stream_with_a_real_registry_cap(tmp_path, hostile):
    res = FASHION.resources["t10k-labels"]  # cap: 10,008 decompressed bytes + margin
    hostile.routes[res.filename] = hostile.forever
    with pytest.raises(DownloadError, match="cap"):
        download(res, tmp_path, [hostile.url], **FAST)
    assert list(tmp_path.iterdir()) == []


def test_announced_huge_file_is_refused_before_reading(tmp_path, hostile, resource, good_bytes):
    hostile.routes["huge/" + NAME] = hostile.huge
    hostile.routes["good/" + NAME] = hostile.fixed(good_bytes)
    dest = tmp_path / "dl"
    path = download(resource, dest, [hostile.url + "huge/", hostile.url + "good/"], **{**FAST, "retries": 3})
    assert path.read_bytes() == good_bytes
    assert hostile.requests == ["huge/" + NAME, "good/" + NAME]
    assert [p.name for p in dest.iterdir()] == [NAME]


def test_a_byte_a_tick_trips_the_stall_timeout_and_keeps_the_part(tmp_path, hostile, resource, good_bytes):
    hostile.routes[NAME] = hostile.trickle(good_bytes, delay=0.02)  # ~50 B/s: the old code hung for ~20 min
    dest = tmp_path / "dl"
    start = time.monotonic()
    with pytest.raises(DownloadError, match="stalled"):
        download(resource, dest, [hostile.url], **{**FAST, "timeout": 0.5})
    assert time.monotonic() - start < 5
    part = dest / (NAME + ".part")
    assert part.exists() and 0 < part.stat().st_size < STALL_BYTES  # resumable: kept
    assert not (dest / NAME).exists()


def test_slow_but_steady_transfer_is_not_a_stall(tmp_path, hostile, resource, good_bytes):
    hostile.routes[NAME] = hostile.trickle(good_bytes, delay=0.02, piece=4096)  # ~200 kB/s
    path = download(resource, tmp_path, [hostile.url], **{**FAST, "timeout": 0.3})
    assert path.read_bytes() == good_bytes


def test_wrong_bytes_keep_only_a_few_quarantined_copies(tmp_path, hostile, resource, good_bytes):
    hostile.routes[NAME] = hostile.fixed(corrupted(good_bytes))
    dest = tmp_path / "dl"
    dest.mkdir()
    for stamp in (1_700_000_000, 1_700_000_001, 1_700_000_002, 1_700_000_003):  # older releases' names
        (dest / f"{NAME}.bad-{stamp}").write_bytes(b"old")
    for _ in range(3):
        with pytest.raises(DownloadError, match="corrupt gzip"):
            download(resource, dest, [hostile.url], **{**FAST, "retries": 3})
    assert len(hostile.requests) == 9
    bad = sorted(dest.glob(NAME + ".bad-*"))
    assert len(bad) == KEEP_BAD
    assert all(p.read_bytes() == corrupted(good_bytes) for p in bad)  # the newest are kept
    assert not (dest / (NAME + ".part")).exists() and not (dest / NAME).exists()


def test_full_disk_while_downloading_removes_the_part_and_stops(
    tmp_path, hostile, resource, good_bytes, monkeypatch
):
    import fmnist.data.download as dl

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            self.fh.write(data[:100])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(dl, "open", lambda *a, **k: Full(open(*a, **k)), raising=False)
    hostile.routes[NAME] = hostile.fixed(good_bytes)
    hostile.routes["second/" + NAME] = hostile.fixed(good_bytes)
    dest = tmp_path / "dl"
    with pytest.raises(DownloadError, match="no space left") as info:
        download(resource, dest, [hostile.url, hostile.url + "second/"], **{**FAST, "retries": 3})
    assert "\n" not in str(info.value)
    assert list(dest.iterdir()) == []
    assert hostile.requests == [NAME]  # neither retried nor tried on another mirror


@pytest.mark.parametrize(
    "mirror",
    ["file:///etc/", "ftp://example.org/", "http:///nohost", "gopher://x/", "http://[::1", "http://h:99999/"],
)
def test_non_http_mirrors_are_refused(tmp_path, resource, mirror):
    with pytest.raises(ConfigError, match="not an http|not a valid URL"):
        download(resource, tmp_path / "dl", [mirror], **FAST)
    assert not (tmp_path / "dl").exists()


def test_download_cli_end_to_end_against_an_endless_mirror(tmp_path, hostile, tiny_spec, capsys, monkeypatch):
    hostile.routes[NAME] = hostile.forever
    for name in ("train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        hostile.routes[name] = hostile.forever
    code = main(
        ["data", "fetch", "--dataset", "tiny", "--mirror", hostile.url, "--retries", "1", "--timeout", "2"]
    )
    assert code == 2
    err = capsys.readouterr().err  # the "downloading ..." note and the progress bar, then the error
    assert "Traceback" not in err and err.count("fmnist: error:") == 1
    assert "could not download" in err and "cap" in err.strip().splitlines()[-1]
    from fmnist.data.sources import cache_root

    raw = cache_root() / "tiny" / "raw"
    assert not raw.exists() or list(raw.iterdir()) == []


# --- finding 3: exports never destroy or mix into a user's files ------------------------------------------


@pytest.fixture
def tiny_ds(tiny_spec, tiny_idx_dir):
    return load_dataset("tiny", tiny_idx_dir)


def test_png_export_into_a_user_folder_is_refused_and_touches_nothing(tmp_path, tiny_ds):
    out = tmp_path / "out"
    user = out / "tiny-train"
    (user / "0-class0").mkdir(parents=True)
    (user / "notes.txt").write_text("my notes")
    (user / "0-class0" / "holiday.png").write_bytes(b"\x89PNG mine")
    before = snapshot(out)
    with pytest.raises(DataError, match="not the output of an earlier `fmnist data export`.*--force") as info:
        export(tiny_ds, out, "png", ("train",))
    assert "\n" not in str(info.value)
    assert snapshot(out) == before
    assert sorted(p.name for p in out.iterdir()) == ["tiny-train"]  # no temp folder left


def test_png_export_with_force_keeps_every_file_it_did_not_write(tmp_path, tiny_ds):
    out = tmp_path / "out"
    user = out / "tiny-train"
    (user / "0-class0").mkdir(parents=True)
    (user / "notes.txt").write_text("my notes")
    (user / "0-class0" / "holiday.png").write_bytes(b"\x89PNG mine")
    export(tiny_ds, out, "png", ("train",), force=True)
    assert (user / "notes.txt").read_text() == "my notes"
    assert (user / "0-class0" / "holiday.png").read_bytes() == b"\x89PNG mine"
    assert (user / MANIFEST).is_file()
    pngs = [p for p in user.rglob("0*.png")]
    assert len(pngs) == 100
    assert temp_names(tmp_path) == []


def test_own_png_export_is_replaced_but_user_extras_in_it_are_kept(tmp_path, tiny_ds):
    out = tmp_path / "out"
    export(tiny_ds, out, "png", ("train",))
    (out / "tiny-train" / "README.txt").write_text("added by the user")
    export(tiny_ds, out, "png", ("train",), limit=7)  # its own output: no --force needed
    images, labels = read_png_tree(out / "tiny-train")
    np.testing.assert_array_equal(images, tiny_ds.train.images[:7])  # stale images of the first export: gone
    assert (out / "tiny-train" / "README.txt").read_text() == "added by the user"
    assert temp_names(tmp_path) == []


@pytest.mark.parametrize("fmt", ["png", "csv", "npz"])
def test_export_on_a_full_disk_is_one_line_and_leaves_no_temporaries(tmp_path, tiny_ds, monkeypatch, fmt):
    from PIL import Image

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if fmt == "png":
        calls = []
        save = Image.Image.save

        def fail_later(self, *args, **kwargs):  # a few images fit, then the disk is full
            calls.append(1)
            if len(calls) > 5:
                full()
            return save(self, *args, **kwargs)

        monkeypatch.setattr(Image.Image, "save", fail_later)
    else:
        import fmnist.data.export as ex

        monkeypatch.setattr(ex.np, "savez_compressed" if fmt == "npz" else "savetxt", full)
    out = tmp_path / "out"
    with pytest.raises(DataError, match="cannot write the .* export: No space left on device") as info:
        export(tiny_ds, out, fmt)
    assert "\n" not in str(info.value)
    assert list(out.iterdir()) == []


def test_new_export_folders_get_the_usual_permissions(tmp_path, tiny_ds):
    old = os.umask(0o027)
    try:
        export(tiny_ds, tmp_path / "out", "png", ("t10k",))
    finally:
        os.umask(old)
    root = tmp_path / "out" / "tiny-t10k"
    assert root.stat().st_mode & 0o777 == 0o750  # was 0700 (tempfile.mkdtemp)
    assert (root / "0-class0").stat().st_mode & 0o777 == 0o750
    assert next((root / "0-class0").glob("*.png")).stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("fmt, name", [("npz", "tiny.npz"), ("csv", "tiny-train.csv")])
def test_file_exports_do_not_replace_a_users_file(tmp_path, tiny_ds, fmt, name):
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text("the user's own file")
    with pytest.raises(DataError, match="not replaced"):
        export(tiny_ds, out, fmt, ("train",))
    assert (out / name).read_text() == "the user's own file"
    assert sorted(p.name for p in out.iterdir()) == [name]
    export(tiny_ds, out, fmt, ("train",), force=True)  # --force: the user asked for it
    export(tiny_ds, out, fmt, ("train",), limit=3)  # now its own output: replaced without --force
    if fmt == "csv":
        assert len(read_csv(out / name)[1]) == 3
    (out / name).write_text("edited by the user")  # changed since the export: no longer its own
    with pytest.raises(DataError, match="not replaced"):
        export(tiny_ds, out, fmt, ("train",))
    assert temp_names(tmp_path) == []


def test_output_equal_to_an_input_is_refused(tmp_path, tiny_spec, tiny_idx_dir):
    # a data folder named like an export's tree: the old code would move it aside and delete it
    data = tmp_path / "out" / "tiny-train"
    data.mkdir(parents=True)
    for p in tiny_idx_dir.iterdir():
        (data / p.name).write_bytes(p.read_bytes())
    ds = load_dataset("tiny", data)
    before = snapshot(data)
    for force in (False, True):
        with pytest.raises(DataError, match="is \\(or holds\\) an input"):
            export(ds, tmp_path / "out", "png", ("train",), force=force)
    assert snapshot(data) == before
    # a file output that resolves to a data file (a link named like the export)
    out = tmp_path / "links"
    out.mkdir()
    (out / "tiny.npz").symlink_to(data / NAME)
    with pytest.raises(DataError, match="input"):
        export(ds, out, "npz", force=True)
    assert snapshot(data) == before


def test_cli_export_refusals_are_one_line(tmp_path, tiny_spec, tiny_idx_dir, capsys):
    user = tmp_path / "out" / "tiny-train"
    user.mkdir(parents=True)
    (user / "keep.txt").write_text("x")
    base = ["data", "export", "--dataset", "tiny", "--data-dir", str(tiny_idx_dir), "--split", "train"]
    assert main([*base, "--format", "png", "--out", str(tmp_path / "out")]) == 2
    assert_one_line_error(capsys.readouterr().err, 2, "tiny-train", "--force")
    assert main([*base, "--format", "png", "--out", str(tmp_path / "out"), "--force"]) == 0
    assert (user / "keep.txt").read_text() == "x"
    capsys.readouterr()
    (tmp_path / "a-file").write_text("x")
    assert main([*base, "--out", str(tmp_path / "a-file")]) == 2
    assert_one_line_error(capsys.readouterr().err, 2, "is not a folder")
    assert (tmp_path / "a-file").read_text() == "x"
    assert main([*base, "--out", str(tmp_path / "out"), "--format", "csv", "--limit", "-1"]) == 2
    assert_one_line_error(capsys.readouterr().err, 2, "--limit")


# --- finding 4: SIGTERM / SIGINT during a PNG export ----------------------------------------------------

SLOW_EXPORT = textwrap.dedent(
    """
    import dataclasses, gzip, hashlib, sys, time
    from pathlib import Path
    from PIL import Image
    from fmnist.data.registry import DATASETS, FASHION, DatasetSpec, Resource
    data = Path(sys.argv[1])
    resources = {}
    for key, res in FASHION.resources.items():
        raw = (data / res.filename).read_bytes()
        resources[key] = Resource(res.filename, hashlib.md5(raw).hexdigest(),
                                  hashlib.md5(gzip.decompress(raw)).hexdigest(), len(raw))
    DATASETS["tiny"] = dataclasses.replace(FASHION, name="tiny", resources=resources, system_dirs=())
    save = Image.Image.save
    def slow_save(self, *args, **kwargs):  # 100 images take 10 s: time to send the signal mid-export
        time.sleep(0.1)
        return save(self, *args, **kwargs)
    Image.Image.save = slow_save
    from fmnist.cli import main
    sys.exit(main(["data", "export", "--dataset", "tiny", "--data-dir", str(data), *sys.argv[2:]]))
    """
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_during_png_export_removes_the_temp_folder(tmp_path, tiny_idx_dir, signum):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_EXPORT, str(tiny_idx_dir), "--format", "png", "--out", str(out)],
        stdout=subprocess.PIPE,
        preexec_fn=sigint_default,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            tmp = [p for p in out.iterdir() if p.name.startswith(".tiny-train.")]
            if tmp and any(tmp[0].rglob("*.png")):  # mid-export: the temp folder holds images
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert_one_line_error(err, proc.returncode, prefix="fmnist: ")
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]  # no temp folder, no half tree
    assert (out / "mine.txt").read_text() == "keep"


def test_cleanup_on_signals_chains_to_the_old_handler_and_restores_it():
    class Stop(BaseException):
        pass

    def raising(signum, frame):
        raise Stop

    old = signal.signal(signal.SIGTERM, raising)
    try:
        with pytest.raises(Stop), cleanup_on_signals():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
            finally:
                os.kill(os.getpid(), signal.SIGTERM)  # a second signal during cleanup is ignored
                time.sleep(0.05)
        assert signal.getsignal(signal.SIGTERM) is raising
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with cleanup_on_signals():
            os.kill(os.getpid(), signal.SIGTERM)  # an ignored signal stays ignored
            time.sleep(0.05)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, old)


# --- finding 5: hostile options are one line --------------------------------------------------------------


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["fetch", "--timeout", "nan"], "--timeout"),
        (["fetch", "--timeout", "0"], "--timeout"),
        (["fetch", "--timeout", "-1"], "--timeout"),
        (["fetch", "--timeout", "inf"], "--timeout"),
        (["fetch", "--retries", "1000000"], "--retries"),
        (["fetch", "--mirror", "file:///etc/"], "--mirror"),
        (["fetch", "--mirror", "ftp://example.org/"], "--mirror"),
        (["sprite", "--columns", "100000000"], "--columns"),
        (["sprite", "--seed", "-1"], "--seed"),
        (["sprite", "--seed", str(2**40)], "--seed"),
        (["info", "--data-dir", "/etc/passwd"], "not a folder"),
        (["verify", "--data-dir", "/etc/passwd"], "not a folder"),
        (["export", "--data-dir", "/etc/passwd"], "not a folder"),
    ],
)
def test_hostile_options_are_one_line(capsys, args, fragment):
    assert main(["data", *args]) == 2
    assert_one_line_error(capsys.readouterr().err, 2, fragment)


def test_mirror_from_the_environment_is_checked(tmp_path, tiny_spec, capsys, monkeypatch):
    monkeypatch.setenv("FMNIST_MIRROR", "file:///etc/")
    assert main(["data", "fetch", "--dataset", "tiny"]) == 2
    assert_one_line_error(capsys.readouterr().err, 2, "$FMNIST_MIRROR", "not an http")


def test_sprite_never_overwrites_its_input_or_a_non_png(tmp_path, tiny_spec, tiny_idx_dir, capsys):
    base = ["data", "sprite", "--dataset", "tiny", "--data-dir", str(tiny_idx_dir), "--columns", "2"]
    data_file = tiny_idx_dir / NAME
    before = data_file.read_bytes()
    assert main([*base, "--out", str(data_file)]) == 2
    assert_one_line_error(capsys.readouterr().err, 2, "data files")
    assert data_file.read_bytes() == before
    (tmp_path / "notes.txt").write_text("mine")
    assert main([*base, "--out", str(tmp_path / "notes.txt")]) == 2
    assert_one_line_error(capsys.readouterr().err, 2, "not a PNG")
    assert main([*base, "--out", str(tmp_path)]) == 2
    assert_one_line_error(capsys.readouterr().err, 2, "is a folder")
    assert main([*base, "--out", str(tmp_path / "s.png")]) == 0
    assert main([*base, "--out", str(tmp_path / "s.png"), "--seed", "3"]) == 0  # a PNG: replaced


def test_gzip_bomb_and_huge_file_in_a_data_dir_are_one_line(
    tmp_path, tiny_spec, tiny_idx_dir, capsys, monkeypatch
):
    d = tmp_path / "d"
    d.mkdir()
    for p in tiny_idx_dir.iterdir():
        (d / p.name).write_bytes(p.read_bytes())
    # 64 MiB of zeros in a 64 kB gzip: the registry's content size bounds the gunzip
    res = tiny_spec.resources["train-images"]
    monkeypatch.setitem(
        DATASETS,
        "tiny",
        dataclasses.replace(
            tiny_spec,
            resources={**tiny_spec.resources, "train-images": dataclasses.replace(res, content_size=78_416)},
        ),
    )
    (d / NAME).write_bytes(gzip.compress(b"\0" * (64 << 20), compresslevel=9))
    assert main(["data", "verify", "--dataset", "tiny", "--data-dir", str(d)]) == 2
    assert_one_line_error(capsys.readouterr().err, 2, "decompresses to more than")
    (d / NAME).unlink()
    with open(d / NAME[:-3], "wb") as fh:  # a 10 GB sparse raw file where the IDX should be
        fh.truncate(10 << 30)
    assert main(["data", "verify", "--dataset", "tiny", "--data-dir", str(d)]) == 2
    assert_one_line_error(capsys.readouterr().err, 2, "more than any copy")


def test_verify_still_accepts_the_real_copies(real_copy):
    """The new size checks must not reject the real files: Debian's verify by content, a download by
    the official .gz MD5, decompressed files by content."""
    expected = {CONTENT} if real_copy == DEBIAN else {OFFICIAL, CONTENT}
    for res in FASHION.resources.values():
        how = verify_file(real_file(real_copy, res), res)
        assert how in expected, (res.filename, how)


def test_outputs_never_replace_a_device_or_fifo(tmp_path, tiny_spec, tiny_idx_dir, tiny_ds, capsys):
    """`fmnist data sprite --out /dev/null` (as root) used to rename a regular file over the device node."""
    import stat

    from fmnist.fsio import atomic_open, write_bytes

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        write_bytes(fifo, b"x")
    (tmp_path / "link-dir").symlink_to(tmp_path)
    with pytest.raises(OSError, match="not a regular file"), atomic_open(tmp_path / "link-dir", "wb"):
        pass
    assert (
        main(["data", "sprite", "--dataset", "tiny", "--data-dir", str(tiny_idx_dir), "--out", str(fifo)])
        == 2
    )
    assert_one_line_error(capsys.readouterr().err, 2, "not a regular file")
    out = tmp_path / "out"
    out.mkdir()
    (out / "tiny-train.csv").symlink_to(fifo)
    with pytest.raises(DataError, match="not a file"):
        export(tiny_ds, out, "csv", ("train",), force=True)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert temp_names(tmp_path) == []
