"""Issue 13 (trust), serve and predict: decompression bombs are refused from the header, memory is
bounded, out-of-memory is never a 415, HEAD works, and every bad option or input is one line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import encode, header_png
from fmnist.cli import main
from fmnist.errors import ConfigError, FmnistError
from fmnist.predict.image_decode import (
    DEFAULT_MAX_DECODED_BYTES,
    MIB,
    DecodeLimits,
    ImageTooLarge,
    OutOfMemory,
    decode_cost,
    probe_image,
    to_gray,
)
from fmnist.predict.preprocess_photo import fashion_style, prepare_image

pytest_plugins = ["conftest_model"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]


def garment_rgba(side: int) -> Image.Image:
    """A dark T-shirt shape on a transparent canvas, with a soft half-transparent edge."""
    a = np.zeros((side, side, 4), np.uint8)
    s = side // 20
    a[4 * s : 17 * s, 7 * s : 13 * s] = (30, 30, 40, 255)
    a[4 * s : 7 * s, 4 * s : 16 * s] = (30, 30, 40, 255)
    a[17 * s : 18 * s, 7 * s : 13 * s] = (30, 30, 40, 128)
    return Image.fromarray(a)


@pytest.fixture(scope="module")
def issue_bomb() -> bytes:
    """The issue's file: 7000 x 7000 RGBA zeros at zlib level 9, about 190 kB, 196 MB decoded."""
    return encode(Image.new("RGBA", (7000, 7000)), compress_level=9)


# ---- the header check ---------------------------------------------------------------------------


def test_the_issue_bomb_is_refused_from_its_header_in_milliseconds(issue_bomb):
    assert len(issue_bomb) < 250_000
    start = time.perf_counter()
    with pytest.raises(ImageTooLarge, match=r"7000x7000 PNG RGBA would take 187 MiB to decode.*128 MiB"):
        prepare_image(issue_bomb, name="bomb.png")
    assert time.perf_counter() - start < 0.5  # was 5-8 s and 1.9-2.2 GB before the header check


def test_decode_cost_is_read_from_the_header():
    cases = {  # picture -> bytes it decodes to (Pillow stores 8-bit multi-band pixels in 4 bytes)
        header_png(7000, 7000, colour_type=6): 7000 * 7000 * 4,
        header_png(7000, 7000, colour_type=2): 7000 * 7000 * 4,  # RGB
        header_png(7000, 7000, colour_type=0): 7000 * 7000,  # L
        header_png(5000, 5000, colour_type=0, depth=16): 5000 * 5000 * 2,  # I;16
    }
    for data, cost in cases.items():
        img = probe_image(data, limits=DecodeLimits(max_decoded_bytes=None))
        assert img.tile and decode_cost(img) == cost  # still undecoded
    webp = probe_image(
        encode(Image.new("RGB", (300, 200)), "WEBP", lossless=True),
        limits=DecodeLimits(max_decoded_bytes=None),
    )
    assert decode_cost(webp) == 4 * 300 * 200 * 4  # libwebp's canvases: measured 4x the image
    photo = Image.new("RGB", (4000, 3000), (230, 230, 230))
    baseline = probe_image(encode(photo, "JPEG"), limits=DecodeLimits(max_decoded_bytes=None))
    assert baseline.size == (1000, 750) and decode_cost(baseline) == 1000 * 750 * 4  # drafted to 1/4
    progressive = probe_image(
        encode(photo, "JPEG", progressive=True), limits=DecodeLimits(max_decoded_bytes=None)
    )
    # every DCT coefficient of the full image, 2 bytes each, in 8x8 blocks: Y 500 x 375 blocks,
    # Cb and Cr at 4:2:0 250 x 188 blocks each
    assert decode_cost(progressive) == 1000 * 750 * 4 + 2 * 64 * (500 * 375 + 2 * 250 * 188)
    with pytest.raises(ImageTooLarge, match="MiB to decode"):
        prepare_image(encode(Image.new("RGB", (7000, 7000)), "JPEG", progressive=True))  # 150 MB


def test_pillow_bomb_error_and_warning_are_handled():
    with pytest.raises(ImageTooLarge, match="pixels"):  # 400 Mpx: Pillow's own DecompressionBombError
        prepare_image(header_png(20_000, 20_000, colour_type=6))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # 100 Mpx: Pillow would warn
        with pytest.raises(ImageTooLarge, match="megapixels"):
            prepare_image(header_png(10_000, 10_000, colour_type=0))


def test_a_big_picture_is_shrunk_early_with_the_same_result():
    """Box-shrinking right after decoding (premultiplied alpha) gives what shrinking after to_gray gave."""
    rgba = garment_rgba(2200)
    on_white = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    cases = {
        "RGBA": rgba,
        "LA": rgba.convert("LA"),
        "RGB": on_white,
        "I;16": Image.fromarray(np.asarray(on_white.convert("L")).astype(np.uint16) * 257),
        "P": on_white.convert("P"),
    }
    for what, img in cases.items():
        old = fashion_style(to_gray(img))  # the whole picture in float, as before
        new = prepare_image(encode(img))
        assert np.abs(old.astype(int) - new.astype(int)).mean() < 2.0, what


def test_predict_cli_checks_the_header_of_each_file(run_dir, tmp_path, capsys):
    (tmp_path / "bomb.png").write_bytes(header_png(7000, 7000, colour_type=6))
    assert main(["predict", str(run_dir), str(tmp_path / "bomb.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bomb.png" in err[0] and "MiB to decode" in err[0]


# ---- out of memory is never a 415 ---------------------------------------------------------------


@pytest.fixture(scope="module")
def small_caps_client(run_dir, fashion_dir):
    """Small decode caps; /samples reads the test images wherever `fmnist data fetch` put them."""
    from fmnist.serve.app import create_app

    app = create_app(
        run_dir, data_dir=fashion_dir, max_decoded_bytes=4 * MIB, max_request_decoded_bytes=8 * MIB
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("where", ["to_gray", "fashion_style", "shrink_early"])
def test_memory_error_is_503_never_415(small_caps_client, monkeypatch, where):
    import fmnist.predict.image_decode as decode
    import fmnist.predict.preprocess_photo as pp

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(decode if where == "shrink_early" else pp, where, no_memory)
    picture = encode(garment_rgba(1100).convert("L") if where == "shrink_early" else garment_rgba(200))
    with pytest.raises(OutOfMemory, match="out of memory"):
        prepare_image(picture, name="p.png")
    r = small_caps_client.post("/predict", files={"files": ("p.png", picture, "image/png")})
    assert r.status_code == 503 and "out of memory" in r.json()["detail"] and "p.png" in r.json()["detail"]


def test_caps_per_picture_and_per_request(small_caps_client):
    one = encode(garment_rgba(1024))  # 4 MiB decoded: at the per-picture cap
    r = small_caps_client.post("/predict", files=[("files", ("a.png", one, "image/png"))] * 2)
    assert r.status_code == 200, r.text
    r = small_caps_client.post(
        "/predict", files=[("files", (f"{i}.png", one, "image/png")) for i in range(3)]
    )
    assert r.status_code == 413 and "12 MiB to decode together" in r.json()["detail"]
    big = encode(garment_rgba(1100))
    r = small_caps_client.post("/predict", files={"files": ("big.png", big, "image/png")})
    assert r.status_code == 413 and "big.png" in r.json()["detail"] and "per picture" in r.json()["detail"]
    limits = small_caps_client.get("/health").json()["limits"]
    assert limits["max_decoded_bytes"] == 4 * MIB and limits["max_request_decoded_bytes"] == 8 * MIB
    assert limits["decode_workers"] >= 1 and limits["max_active"] >= 1


def test_bad_limits_in_the_python_api_are_one_line(run_dir):
    from fmnist.serve.app import create_app

    for kwargs in (
        {"max_files": 0},
        {"max_decoded_bytes": -1},
        {"max_pixels": 10**9},
        {"decode_workers": 1.5},
    ):
        with pytest.raises(FmnistError, match=next(iter(kwargs))):
            create_app(run_dir, **kwargs)
    with pytest.raises(ConfigError, match="unknown device"):
        create_app(run_dir, device="meta")  # used to start, then answer 500


# ---- HEAD ---------------------------------------------------------------------------------------


def test_head_works_wherever_get_does(small_caps_client):
    for path in ("/", "/health", "/samples?n=2&seed=1", "/static/app.js", "/openapi.json"):
        get = small_caps_client.get(path)
        head = small_caps_client.head(path)
        assert get.status_code == head.status_code == 200, path
        assert head.content == b"" and head.headers["content-length"] == get.headers["content-length"], path
    assert small_caps_client.head("/predict").status_code == 405
    assert small_caps_client.head("/nowhere").status_code == 404


# ---- bad serve options: one line, before the port is bound -----------------------------------


SERVE_OPTIONS = {
    "--max-upload-mb nan": "--max-upload-mb",
    "--max-upload-mb 0": "--max-upload-mb",
    "--max-megapixels inf": "--max-megapixels",
    "--max-megapixels -5": "--max-megapixels",
    "--max-files 0": "--max-files",
    "--max-decoded-mb nan": "--max-decoded-mb",
    "--max-request-decoded-mb 64": "--max-request-decoded-mb",  # under the per-picture cap
    "--decode-workers 0": "--decode-workers",
    "--max-active -1": "--max-active",
    "--log-level bogus": "--log-level",
    "--port 70000": "--port",
    "--device meta": "unknown device",
    "--device cuda:x": "unknown device",
    "--backend onnx --device cuda": "runs on the CPU",
}


def test_bad_serve_options_are_one_line_before_binding(run_dir, capsys):
    import torch

    options = dict(SERVE_OPTIONS)
    if not torch.cuda.is_available():
        options["--device cuda"] = "no CUDA device"
    with socket.socket() as busy:  # the port is taken: an option checked after binding would say so
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        for option, words in options.items():
            argv = ["serve", str(run_dir), "--port", port, *option.split()]
            if "--port 70000" in option:
                argv = ["serve", str(run_dir), *option.split()]
            start = time.perf_counter()
            assert main(argv) == 2, option
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith("fmnist: error: ") and words in err[0], (option, err)
            assert "already in use" not in err[0] and time.perf_counter() - start < 5, option


def test_a_bad_serve_option_is_one_line_in_a_real_process(run_dir):
    done = subprocess.run(
        [sys.executable, "-m", "fmnist", "serve", str(run_dir), "--max-upload-mb", "nan"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "fmnist: error: --max-upload-mb must be a number from 0.001 to 1024, got nan"
    ]


def test_cli_defaults_are_the_library_caps():
    from fmnist.cli import build_parser
    from fmnist.serve import app

    parser = build_parser()
    predict = parser.parse_args(["predict", "RUN", "x.png"])
    assert predict.max_decoded_mb * MIB == DEFAULT_MAX_DECODED_BYTES
    serve = parser.parse_args(["serve", "RUN"])
    assert serve.max_decoded_mb * MIB == app.MAX_DECODED_BYTES == DEFAULT_MAX_DECODED_BYTES
    assert serve.max_request_decoded_mb * MIB == app.MAX_REQUEST_DECODED_BYTES
    assert (serve.decode_workers, serve.max_active) == (app.DECODE_WORKERS, app.MAX_ACTIVE)
    assert serve.max_upload_mb * MIB == app.MAX_UPLOAD_BYTES and serve.max_files == app.MAX_FILES


# ---- one device parser ----------------------------------------------------------------------------


def test_one_device_resolution_for_every_command(run_dir, tmp_path):
    from fmnist.predict.predict import load
    from fmnist.train.device import check_device_name, resolve_device

    for bad in ("meta", "xla", "cuda:x", "CPU", " cpu", ""):
        with pytest.raises(ConfigError, match="unknown device"):
            check_device_name(bad)
        with pytest.raises(ConfigError, match="unknown device"):
            resolve_device(bad)
        with pytest.raises(ConfigError, match="unknown device"):
            load(run_dir, device=bad)
    assert str(resolve_device("cpu")) == "cpu" and str(load(run_dir, device="auto").device) in ("cpu", "cuda")
    for folder in ("predict", "serve"):  # no second parser left behind
        for source in (ROOT / "src" / "fmnist" / folder).glob("*.py"):
            assert "torch.device(" not in source.read_text(), source
    done = subprocess.run(  # the name check needs no torch (the ONNX path never imports it)
        [
            sys.executable,
            "-c",
            "import sys; from fmnist.train.device import check_device_name as c; c('cuda:1'); "
            "assert 'torch' not in sys.modules",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


# ---- fmnist predict: every bad input is one line, nothing written outside --save-processed -------


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_every_bad_predict_input_is_one_line_and_writes_nothing(run_dir, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "empty.png").write_bytes(b"")
    (work / "bomb.png").write_bytes(header_png(7000, 7000, colour_type=6))
    (work / "mixed").mkdir()
    (work / "mixed" / "notes.txt").write_text("hello\n")
    (work / "mixed" / "fake.jpg").write_text("not a jpeg\n")
    (work / "texts").mkdir()
    (work / "texts" / "readme.md").write_text("x\n")
    (work / "junk.pt").write_bytes(os.urandom(4096))
    good = work / "good.png"
    good.write_bytes(encode(garment_rgba(200)))
    before = tree(work)
    one_line_cases = {
        "missing file": ([str(run_dir), "missing.png"], "missing.png: no such file"),
        "0-byte file": ([str(run_dir), "empty.png"], "empty.png: empty file"),
        "huge header": ([str(run_dir), "bomb.png"], "bomb.png: 7000x7000"),
        "folder of non-pictures": ([str(run_dir), "texts"], "texts: no pictures in this folder"),
        "folder with a fake picture": ([str(run_dir), "mixed"], "fake.jpg: not an image"),
        "junk model": (["junk.pt", "good.png"], "junk.pt"),
        "model is a folder of nothing": (["texts", "good.png"], "texts"),
        "device meta": ([str(run_dir), "good.png", "--device", "meta"], "unknown device"),
        "save-processed is a file": (
            [str(run_dir), "good.png", "--save-processed", "good.png"],
            "not a folder",
        ),
        "decoded cap nan": ([str(run_dir), "good.png", "--max-decoded-mb", "nan"], "--max-decoded-mb"),
    }
    for what, (argv, words) in one_line_cases.items():
        assert main(["predict", *argv]) == 2, what
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("fmnist: error: ") and words in err[0], (what, err)
        assert captured.out == "", what
    assert tree(work) == before  # nothing written, nothing removed
    # good and bad together, saving the processed inputs: one line per bad file, files only in DIR
    argv = [str(run_dir), "good.png", "empty.png", "bomb.png", "mixed", "--save-processed", "seen"]
    assert main(["predict", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith("good.png: ") and len(captured.out.strip().splitlines()) == 1
    assert len(captured.err.strip().splitlines()) == 3
    assert tree(work) - before == {"seen", "seen/00000-good.png"}


# ---- the server's peak memory ---------------------------------------------------------------------


def test_server_memory_is_bounded_under_bombs(onnx_path, tmp_path):
    """4 requests at once, each of 16 copies of the issue's bomb (refused from the headers) and then
    each of the largest pictures the caps allow (2 x 128 MiB decoded): the server's VmHWM stays
    under idle + 2 decode workers x (128 + 32) MiB + 4 admitted x (2 x body + 4 MiB) + 64 MiB, about
    idle + 400 MiB (see benchmarks/bench_serve_memory.py); before the fix one bomb took 1.9 GB."""
    out = tmp_path / "mem.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "bench_serve_memory.py"),
        "--model", str(onnx_path),
        "--backend", "onnx",
        "--concurrency", "4",
        "--no-single",
        "--scenarios", "bomb,max-file",
        "--timeout", "100",
        "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {r["scenario"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["bomb"]["statuses"] == {"413": 4} and "187 MiB to decode" in rows["bomb"]["detail"]
    assert rows["max-file"]["statuses"] == {"200": 4} and rows["max-file"]["files"] == 2
    for r in rows.values():
        assert r["peak_mib"] <= r["bound_mib"], r
        assert r["peak_mib"] - r["idle_mib"] <= 2 * (DEFAULT_MAX_DECODED_BYTES / MIB + 32) + 4 * 10 + 64, r
    assert rows["bomb"]["peak_mib"] - rows["bomb"]["idle_mib"] < 64  # nothing decoded
