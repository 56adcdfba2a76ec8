"""``fmnist serve``: the HTTP API and the web page on one port, loopback by default."""

from __future__ import annotations

import errno
import math
import socket
from pathlib import Path

from fmnist.cli import CPU_BY_DEFAULT, add_command, add_data_dir_arg, add_device_arg
from fmnist.errors import FmnistError
from fmnist.train.device import check_device_name, resolve_device

# The web app (fastapi, uvicorn: the serve extra) is imported inside the command: `fmnist --help` stays light.


def register(sub) -> None:
    p = add_command(sub, "serve", cmd_serve)
    p.add_argument("run", metavar="RUN_DIR", help="run folder, model.pt, or (with --backend onnx) model.onnx")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch", help="inference engine")
    add_device_arg(p, default="cpu", note=CPU_BY_DEFAULT)
    add_data_dir_arg(p, use="only for the page's gallery of test images", download=False)
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="request body cap, MiB")
    p.add_argument("--max-files", type=int, default=16, help="pictures per request")
    p.add_argument(
        "--max-megapixels", type=float, default=50.0, help="pixel cap per picture (decompression bombs)"
    )
    p.add_argument(
        "--max-decoded-mb",
        type=float,
        default=128.0,
        help="cap on what one picture takes once decoded, MiB, judged from its header",
    )
    p.add_argument(
        "--max-request-decoded-mb",
        type=float,
        default=256.0,
        help="the same cap for all the pictures of one request together, MiB",
    )
    p.add_argument("--decode-workers", type=int, default=2, help="pictures decoded at once (memory bound)")
    p.add_argument(
        "--max-active", type=int, default=8, help="requests let in at once; the others wait (memory bound)"
    )
    p.add_argument("--log-level", default="info", help=f"uvicorn log level: {', '.join(LOG_LEVELS)}")


LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")  # uvicorn's
# Upper bounds: far above any sensible setting, low enough that a typo is caught.
NUMBER_RANGES = {  # option: (lowest, highest)
    "max_upload_mb": (0.001, 1024.0),
    "max_files": (1, 1000),
    "max_megapixels": (0.0001, 89.0),  # above 89.4 Pillow warns, above 178.9 it refuses
    "max_decoded_mb": (1.0, 16384.0),
    "max_request_decoded_mb": (1.0, 65536.0),
    "decode_workers": (1, 64),
    "max_active": (1, 4096),
}


def check_options(args) -> None:
    """Every number finite and in range, the log level and the device name known: one line each.

    Run before the model is loaded or the port bound, so a typo never starts a server.
    """
    for key, (low, high) in NUMBER_RANGES.items():
        value = getattr(args, key)
        flag = "--" + key.replace("_", "-")
        if not math.isfinite(value) or not low <= value <= high:
            raise FmnistError(f"{flag} must be a number from {low:g} to {high:g}, got {value!r}")
    if args.max_request_decoded_mb < args.max_decoded_mb:
        raise FmnistError(
            f"--max-request-decoded-mb ({args.max_request_decoded_mb:g}) must be at least "
            f"--max-decoded-mb ({args.max_decoded_mb:g})"
        )
    if args.log_level.lower() not in LOG_LEVELS:
        raise FmnistError(f"--log-level {args.log_level!r}: choose one of {', '.join(LOG_LEVELS)}")
    check_device_name(args.device)
    if args.backend == "onnx" and args.device not in ("auto", "cpu"):
        raise FmnistError(f"--device {args.device}: the onnx backend runs on the CPU (onnxruntime); use cpu")


def check_port(host: str, port: int) -> None:
    """Fail with one line now rather than with uvicorn's traceback-free exit later."""
    if not 0 < port < 65536:
        raise FmnistError(f"--port must be 1..65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FmnistError(f"--host {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as exc:
            why = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise FmnistError(f"cannot listen on {host}:{port}: {why}") from None


def cmd_serve(args) -> int:
    """serve the model over HTTP with a web page (FastAPI + uvicorn)

    Load the model once and answer POST /predict (multipart pictures), GET /health, GET /samples and the
    page at /. Listens on 127.0.0.1 unless told otherwise. With --backend onnx the run folder's
    model.onnx (from `fmnist export`) runs under onnxruntime and torch is never imported. Memory is
    bounded: each picture's decoded size is checked from its header (--max-decoded-mb,
    --max-request-decoded-mb), --decode-workers pictures are decoded at once and --max-active requests
    are let in at once; the peak is about the idle server + workers x decoded cap
    (benchmarks/bench_serve_memory.py measures it).

    Example: fmnist serve runs/latest --port 8000   # then open http://127.0.0.1:8000/
    """
    import uvicorn

    from fmnist.serve.app import create_app

    check_options(args)
    if args.backend == "torch":
        resolve_device(args.device)  # the device must exist here: one line now, not a 500 later
    model = Path(args.run)
    if args.backend == "onnx" and model.is_dir():
        model = model / "model.onnx"
        if not model.exists():
            raise FmnistError(f"{model}: missing; make it with `fmnist export {args.run} --format onnx`")
    check_port(args.host, args.port)
    app = create_app(
        model,
        backend=args.backend,
        device=args.device,
        data_dir=args.data_dir,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_files=args.max_files,
        max_pixels=int(args.max_megapixels * 1e6),
        max_decoded_bytes=int(args.max_decoded_mb * 2**20),
        max_request_decoded_bytes=int(args.max_request_decoded_mb * 2**20),
        decode_workers=args.decode_workers,
        max_active=args.max_active,
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: listening on {args.host}: reachable from other machines")
    print(f"fmnist: serving {model} ({args.backend}) on http://{args.host}:{args.port}/")
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level.lower())
    return 0
