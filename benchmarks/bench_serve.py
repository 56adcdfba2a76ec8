"""Load test of ``fmnist serve`` on loopback, and ONNX vs torch CPU inference throughput.

For each backend (torch, onnx) a real server is started as a user would (``python -m fmnist
serve ... --port P``, 127.0.0.1), then ``--requests`` POST /predict calls are sent with at most
``--concurrency`` in flight (httpx, asyncio), each with one picture: a 28x28 Fashion-MNIST PNG
and, separately, a 640x480 JPEG shop-style photo. Every answer must be 200: any error fails the
run (exit 1). Latency p50/p95/p99 and throughput are printed as a Markdown table. The load
generator shares the machine's cores with the server, so these are conservative figures.

Then the model itself: batches of 256 test images through torch and through onnxruntime
(CPUExecutionProvider), warm-up then timed, images per second.

Without ``--model`` a FastCNN of the width ``fmnist run`` trains on this machine (24 on CPUs with
native bf16, 16 on AVX2-only CPUs) with random weights is used: speed does not depend on the weights.

    python benchmarks/bench_serve.py                      # about 1-2 minutes on 2 cores
    python benchmarks/bench_serve.py --model runs/latest --requests 500 --json serve.json
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model",
        default=None,
        help="run folder or model.pt (default: random FastCNN of the default recipe's width)",
    )
    p.add_argument(
        "--requests", type=int, default=200, help="POST /predict calls per backend and picture kind"
    )
    p.add_argument("--concurrency", type=int, default=50, help="requests in flight at once")
    p.add_argument("--backends", default="torch,onnx", help="comma-separated: torch, onnx")
    p.add_argument("--kinds", default="png28,photo", help="comma-separated picture kinds: png28, photo")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds allowed for one load run (bounded)")
    p.add_argument("--batch", type=int, default=256, help="batch size of the inference throughput test")
    p.add_argument("--seconds", type=float, default=5.0, help="timed seconds per inference engine")
    p.add_argument(
        "--threads", default="1,2", help="comma-separated intra-op thread counts for the inference test"
    )
    p.add_argument("--json", default=None, help="also write the rows here")
    return p.parse_args(argv)


def machine() -> str:
    import onnxruntime
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} vCPU {cpu}, Python {platform.python_version()}, torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}, {platform.system()}; load average at start {load:.1f}"
    )


def make_model(folder: Path) -> Path:
    """A random-weight FastCNN of the default recipe's width, saved as a run, with the real data fingerprint."""
    import torch

    from fmnist.data.registry import get_spec
    from fmnist.models import build_model
    from fmnist.models.checkpoint import model_record, save
    from fmnist.train.config import make_config
    from fmnist.train.device import default_preset

    try:
        from fmnist.data.loader import load_dataset

        fingerprint = load_dataset("fashion", download=False).fingerprint
    except Exception:  # noqa: BLE001 - the fingerprint is only a label here
        fingerprint = "unknown"
    torch.manual_seed(0)
    width = make_config(default_preset(torch.device("cpu"))).width
    model = build_model("fastcnn", width=width)
    classes = get_spec("fashion").classes
    record = model_record(
        model,
        arch="fastcnn",
        arch_kwargs={"width": width},
        classes=classes,
        mean=0.2860405969887955,
        std=0.35302424451492237,
        dataset="fashion",
        fingerprint=fingerprint,
        epoch=0,
        metrics={},
        config={"note": "random weights for bench_serve"},
    )
    save(record, folder / "model.pt")
    return folder


def pictures(kind: str, n: int = 64) -> list[bytes]:
    """Upload bodies: Fashion-MNIST test images as PNG, or 640x480 JPEG photos made from them."""
    from PIL import Image

    try:
        from fmnist.data.loader import load_dataset

        images = np.asarray(load_dataset("fashion", download=False).test.images[:n])
    except Exception:  # noqa: BLE001 - no data: random blobs still exercise the path
        images = (np.random.default_rng(0).random((n, 28, 28)) * 255).astype(np.uint8)
    out = []
    for x in images:
        buffer = io.BytesIO()
        if kind == "png28":
            Image.fromarray(x).save(buffer, format="PNG")
        else:
            canvas = Image.new("L", (640, 480), 240)
            canvas.paste(Image.fromarray(255 - x).resize((392, 392), Image.Resampling.BICUBIC), (124, 44))
            canvas.convert("RGB").save(buffer, format="JPEG", quality=88)
        out.append(buffer.getvalue())
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    model: Path, backend: str, port: int, extra: list[str] | tuple[str, ...] = ()
) -> subprocess.Popen:
    """``fmnist serve`` on 127.0.0.1:``port`` (``extra``: more options), once it answers /health."""
    cmd = [
        sys.executable,
        "-m",
        "fmnist",
        "serve",
        str(model),
        "--backend",
        backend,
        "--port",
        str(port),
        "--log-level",
        "warning",
        *extra,
    ]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import httpx

    deadline = time.monotonic() + 90
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).raise_for_status()
            return server
        except httpx.HTTPError:
            if server.poll() is not None:
                raise SystemExit(f"server exited: {server.stderr.read().decode()}") from None
            if time.monotonic() > deadline:
                server.kill()
                raise SystemExit("server did not answer /health within 90 s") from None
            time.sleep(0.2)


async def load_run(url: str, bodies: list[bytes], requests: int, concurrency: int, timeout: float) -> dict:
    """``requests`` uploads, at most ``concurrency`` at once; latencies in ms, errors counted."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:

        async def one(i: int) -> None:
            async with gate:
                start = time.perf_counter()
                try:
                    r = await client.post(
                        url,
                        files={"files": (f"{i}.img", bodies[i % len(bodies)], "application/octet-stream")},
                    )
                    if r.status_code != 200:
                        errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                latencies.append((time.perf_counter() - start) * 1000)

        await one(0)  # warm-up: first request pays for lazy imports
        latencies.clear()
        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(requests))), timeout)
        wall = time.perf_counter() - start
    q = np.percentile(latencies, [50, 95, 99])
    return {
        "requests": requests,
        "concurrency": concurrency,
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "p50_ms": float(q[0]),
        "p95_ms": float(q[1]),
        "p99_ms": float(q[2]),
        "mean_ms": statistics.fmean(latencies),
        "throughput_rps": requests / wall,
        "wall_s": wall,
    }


def inference_throughput(
    model_dir: Path, onnx_path: Path, batch: int, seconds: float, threads: list[int]
) -> list[dict]:
    """Images per second at ``batch`` for torch (LoadedModel.logits) and onnxruntime (OnnxModel.logits),
    each with ``threads`` intra-op threads (on shared cores one thread can beat two)."""
    import torch

    from fmnist.export.onnx_runtime import OnnxModel
    from fmnist.models import load_model

    images = (np.random.default_rng(0).random((batch, 28, 28)) * 255).astype(np.uint8)
    loaded = load_model(model_dir)
    rows = []
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        engines = {
            "torch": loaded.logits,
            "onnxruntime": OnnxModel(onnx_path, intra_op_threads=n_threads).logits,
        }
        for name, fn in engines.items():
            for _ in range(3):
                fn(images, batch_size=batch)
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                fn(images, batch_size=batch)
                n += 1
            wall = time.perf_counter() - start
            rows.append(
                {
                    "engine": name,
                    "threads": n_threads,
                    "batch": batch,
                    "images_per_s": n * batch / wall,
                    "ms_per_batch": 1000 * wall / n,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from fmnist.export.exporters import export

    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        model_dir = Path(args.model) if args.model else make_model(Path(tmp))
        onnx_path = export(model_dir, "onnx", Path(tmp) / "model.onnx")
        rows = []
        for backend in args.backends.split(","):
            target = onnx_path if backend == "onnx" else model_dir
            port = free_port()
            server = start_server(target, backend, port)
            try:
                for kind in args.kinds.split(","):
                    bodies = pictures(kind)
                    result = asyncio.run(
                        load_run(
                            f"http://127.0.0.1:{port}/predict",
                            bodies,
                            args.requests,
                            args.concurrency,
                            args.timeout,
                        )
                    )
                    row = {
                        "backend": backend,
                        "picture": kind,
                        "upload_bytes": int(np.mean([len(b) for b in bodies])),
                    } | result
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            finally:
                server.terminate()
                server.wait(timeout=30)
        threads = [int(t) for t in args.threads.split(",")]
        engines = inference_throughput(model_dir, onnx_path, args.batch, args.seconds, threads)
        for row in engines:
            print(json.dumps(row), flush=True)

    print(
        "\n| backend | picture | requests | concurrency | errors | p50 ms | p95 ms | p99 ms | throughput req/s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['backend']} | {r['picture']} ({r['upload_bytes'] / 1024:.1f} KiB) | {r['requests']} | {r['concurrency']} | "
            f"{r['errors']} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {r['throughput_rps']:.0f} |"
        )
    print("\n| engine | threads | batch | images/s | ms per batch |")
    print("|---|---:|---:|---:|---:|")
    for r in engines:
        print(
            f"| {r['engine']} | {r['threads']} | {r['batch']} | {r['images_per_s']:,.0f} | {r['ms_per_batch']:.1f} |"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": machine(), "serve": rows, "inference": engines}, indent=2) + "\n"
        )
    failed = [r for r in rows if r["errors"]]
    for r in failed:
        print(
            f"FAILED: {r['backend']}/{r['picture']}: {r['errors']} errors, first: {r['first_error']}",
            file=sys.stderr,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
