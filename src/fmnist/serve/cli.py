"""``fmnist serve``: the HTTP API and the web page on one port, loopback by default."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

from fmnist.cli import add_command
from fmnist.errors import FmnistError


def register(sub) -> None:
    p = add_command(
        sub,
        "serve",
        help="serve the model over HTTP with a web page (FastAPI + uvicorn)",
        description="Load the model once and answer POST /predict (multipart pictures), GET /health,\n"
        "GET /samples and the page at /. Listens on 127.0.0.1 unless told otherwise.\n"
        "With --backend onnx the run folder's model.onnx (from `fmnist export`) runs under\n"
        "onnxruntime and torch is never imported.",
        example="fmnist serve runs/latest --port 8000   # then open http://127.0.0.1:8000/",
    )
    p.add_argument("run", metavar="RUN_DIR", help="run folder, model.pt, or (with --backend onnx) model.onnx")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch", help="inference engine")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, auto")
    p.add_argument(
        "--data-dir", default=None, help="folder with the IDX files, for the gallery of test images"
    )
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="request body cap, MiB")
    p.add_argument("--max-files", type=int, default=16, help="pictures per request")
    p.add_argument(
        "--max-megapixels", type=float, default=50.0, help="pixel cap per picture (decompression bombs)"
    )
    p.add_argument("--log-level", default="info", help="uvicorn log level")
    p.set_defaults(func=cmd_serve)


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
    import uvicorn

    from fmnist.serve.app import create_app

    if args.max_upload_mb <= 0 or args.max_files < 1 or args.max_megapixels <= 0:
        raise FmnistError("--max-upload-mb, --max-files and --max-megapixels must be positive")
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
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: listening on {args.host}: reachable from other machines")
    print(f"fmnist: serving {model} ({args.backend}) on http://{args.host}:{args.port}/")
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
