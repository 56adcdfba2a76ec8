"""Peak memory of ``fmnist serve`` under decompression bombs: many small files that decode huge.

A real server is started as a user would (``python -m fmnist serve MODEL --port P``, 127.0.0.1
only, default limits unless told), then each scenario sends its requests all at once and the
server process's peak resident memory is read from ``/proc/PID/status`` (VmHWM, reset before
each scenario through ``/proc/PID/clear_refs``). The pictures, made here:

* ``bomb``: the issue's file, a 7000 x 7000 RGBA PNG of zeros at zlib level 9 (190 kB; 196 MB
  decoded, over the per-picture cap: refused from its header);
* ``max-file``: the largest RGBA PNG under the per-picture cap (5792 x 5792 at 128 MiB), a dark
  box on a light backdrop (so it is classified), ``--max-request-decoded-mb`` / 128 of them per
  request (the most a request may carry, 2 by default);
* ``max-request``: 16 pictures filling the per-request cap together (2048 x 2048 RGBA at 256 MiB);
* ``over-request``: 16 ``max-file`` pictures (refused from the headers: over the request cap).

Each scenario runs once with one request, then with ``--concurrency`` requests at once (bounded:
``--timeout`` seconds for the whole run; the server is stopped at the end whatever happens).
The stated bound, checked for each scenario (exit 1 if one is over it):

    peak <= idle RSS + decode_workers x (max_decoded + 32 MiB)
                     + max_active x (2 x request body + 4 MiB) + 64 MiB

(decode_workers pictures decoded at once, each under the per-picture cap plus Pillow's and the
preprocessing's working buffers, 10-15 MB measured; each admitted request holds its upload
twice, as the parser's spooled files and as bytes; 64 MiB for the allocator and the threads.)

    python benchmarks/bench_serve_memory.py                   # about 1-2 minutes on 2 cores
    python benchmarks/bench_serve_memory.py --concurrency 4 --backend onnx --json mem.json
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

MIB = 2**20
HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model", default=None, help="run folder, model.pt or (onnx) model.onnx; default: random FastCNN"
    )
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    p.add_argument("--concurrency", type=int, default=50, help="requests sent at once, per scenario")
    p.add_argument("--scenarios", default="bomb,max-file,max-request,over-request", help="comma-separated")
    p.add_argument("--no-single", action="store_true", help="skip the one-request run of each scenario")
    p.add_argument("--max-decoded-mb", type=float, default=128.0, help="the server's per-picture cap")
    p.add_argument("--max-request-decoded-mb", type=float, default=256.0, help="the server's per-request cap")
    p.add_argument("--decode-workers", type=int, default=2)
    p.add_argument("--max-active", type=int, default=8)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds for the whole run")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args(argv)
    if not 1 <= args.concurrency <= 200:
        p.error("--concurrency must be 1..200")
    return args


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak(pid: int) -> None:
    """VmHWM := VmRSS (Linux 4.0+: write 5 to clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def png_rgba(side: int, *, blank: bool = False) -> bytes:
    """A side x side RGBA PNG at zlib level 9: all zeros, or a dark box on a light opaque backdrop."""
    from PIL import Image

    if blank:
        img = Image.new("RGBA", (side, side))
    else:
        img = Image.new("RGBA", (side, side), (235, 235, 235, 255))
        img.paste((25, 25, 25, 255), (side // 3, side // 5, 2 * side // 3, 4 * side // 5))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


def scenario_files(name: str, max_decoded: int, max_request: int) -> list[bytes]:
    max_side = math.isqrt(max_decoded // 4)  # RGBA is stored at 4 bytes per pixel
    if name == "bomb":
        return [png_rgba(7000, blank=True)] * 16
    if name == "max-file":
        return [png_rgba(max_side)] * max(1, max_request // (max_side * max_side * 4))
    if name == "max-request":
        return [png_rgba(math.isqrt(max_request // 16 // 4))] * 16
    if name == "over-request":
        return [png_rgba(max_side)] * 16
    raise SystemExit(f"unknown scenario {name!r}")


async def burst(url: str, files: list[bytes], n: int, timeout: float) -> tuple[Counter, float, str]:
    """``n`` requests at once, each carrying ``files``: statuses, wall seconds, one error detail."""
    import httpx

    statuses: Counter = Counter()
    detail = ""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:

        async def one(i: int) -> None:
            nonlocal detail
            body = [("files", (f"{i}-{j}.png", data, "image/png")) for j, data in enumerate(files)]
            try:
                r = await client.post(url, files=body)
                statuses[r.status_code] += 1
                if r.status_code != 200 and not detail:
                    detail = r.json().get("detail", r.text)[:300]
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1

        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), timeout)
    return statuses, time.perf_counter() - start, detail


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(HERE))
    from bench_serve import free_port, make_model, start_server

    deadline = time.monotonic() + args.timeout
    max_decoded = int(args.max_decoded_mb * MIB)
    max_request = int(args.max_request_decoded_mb * MIB)
    limits = [
        "--max-decoded-mb", str(args.max_decoded_mb),
        "--max-request-decoded-mb", str(args.max_request_decoded_mb),
        "--decode-workers", str(args.decode_workers),
        "--max-active", str(args.max_active),
    ]  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-serve-memory-") as tmp:
        model = Path(args.model) if args.model else make_model(Path(tmp))
        if args.backend == "onnx" and model.suffix != ".onnx":
            from fmnist.export.exporters import export

            model = export(model, "onnx", Path(tmp) / "model.onnx")
        port = free_port()
        server = start_server(model, args.backend, port, extra=limits)
        url = f"http://127.0.0.1:{port}/predict"
        try:
            idle = status_kib(server.pid, "VmRSS") / 1024
            print(f"server pid {server.pid} ({args.backend}): idle RSS {idle:.0f} MiB", flush=True)
            for name in args.scenarios.split(","):
                files = scenario_files(name, max_decoded, max_request)
                body = sum(len(f) for f in files)
                bound = (
                    idle
                    + args.decode_workers * (max_decoded / MIB + 32)
                    + min(args.max_active, args.concurrency) * (2 * body / MIB + 4)
                    + 64
                )
                for n in ([] if args.no_single else [1]) + [args.concurrency]:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise SystemExit(f"--timeout {args.timeout:g} s reached")
                    reset_peak(server.pid)
                    statuses, wall, detail = asyncio.run(burst(url, files, n, left))
                    peak = status_kib(server.pid, "VmHWM") / 1024
                    row = {
                        "scenario": name,
                        "files": len(files),
                        "request_kb": round(body / 1000),
                        "requests": n,
                        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)},
                        "wall_s": round(wall, 2),
                        "idle_mib": round(idle),
                        "peak_mib": round(peak),
                        "bound_mib": round(bound),
                        "under_bound": peak <= bound,
                        "detail": detail,
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    print(
        "\n| scenario | files/request | request kB | requests at once | statuses | wall s | peak RSS MiB | bound MiB |"
    )
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    for r in rows:
        statuses = ", ".join(f"{k}: {v}" for k, v in r["statuses"].items())
        print(
            f"| {r['scenario']} | {r['files']} | {r['request_kb']} | {r['requests']} | {statuses} | "
            f"{r['wall_s']} | {r['peak_mib']} | {r['bound_mib']} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"backend": args.backend, "rows": rows}, indent=2) + "\n")
    over = [r for r in rows if not r["under_bound"]]
    for r in over:
        print(
            f"OVER BOUND: {r['scenario']} x{r['requests']}: {r['peak_mib']} > {r['bound_mib']} MiB",
            file=sys.stderr,
        )
    return 1 if over else 0


if __name__ == "__main__":
    raise SystemExit(main())
