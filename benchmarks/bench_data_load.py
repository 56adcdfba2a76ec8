"""Load time of the real Fashion-MNIST files: the README reader against fmnist's cached loader.

    nice -n 19 .venv/bin/python benchmarks/bench_data_load.py [--data-dir DIR] [--repeats 5]

Four ways to get both splits as uint8 arrays, each timed twice per repeat:
- "open": until the call returns (a memory map is lazy: its pages are not read yet);
- "open + full read": the call plus one pass over every byte of all four arrays (a uint64 sum),
  the same pass for every method, so the memory map is not unfairly lazy.
Cold runs use a fresh, empty cache each repeat (locate + verify + gunzip + write .npy); warm runs
reuse one filled cache (a stat per file + np.load(mmap_mode="r")). The OS page cache stays warm
throughout: the warm figures are "already read once since boot", not a cold disk.

Prints a markdown table and writes benchmarks/results/data_load.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fmnist.data import load_dataset, load_mnist

HERE = Path(__file__).resolve().parent
SYSTEM_COPY = "/usr/share/datasets/fashion-mnist"


def readme_load_mnist(path, kind="train"):
    """The README's utils/mnist_reader.load_mnist."""
    labels_path = os.path.join(path, f"{kind}-labels-idx1-ubyte.gz")
    images_path = os.path.join(path, f"{kind}-images-idx3-ubyte.gz")
    with gzip.open(labels_path, "rb") as lbpath:
        labels = np.frombuffer(lbpath.read(), dtype=np.uint8, offset=8)
    with gzip.open(images_path, "rb") as imgpath:
        images = np.frombuffer(imgpath.read(), dtype=np.uint8, offset=16).reshape(len(labels), 784)
    return images, labels


def touch(arrays: list[np.ndarray]) -> int:
    """Read every byte once."""
    return sum(int(a.sum(dtype=np.uint64)) for a in arrays)


def with_cache(cache: Path, fn):
    old = os.environ.get("FMNIST_CACHE")
    os.environ["FMNIST_CACHE"] = str(cache)
    try:
        return fn()
    finally:
        if old is None:
            os.environ.pop("FMNIST_CACHE", None)
        else:
            os.environ["FMNIST_CACHE"] = old


def dataset_arrays(ds) -> list[np.ndarray]:
    return [ds.train.images, ds.train.labels, ds.test.images, ds.test.labels]


def methods(data_dir: str, scratch: Path):
    """name -> (description, function(repeat) returning the four arrays)."""
    warm = scratch / "warm-cache"
    with_cache(warm, lambda: load_dataset("fashion", data_dir))  # fill it once

    def readme(_):
        return [a for kind in ("train", "t10k") for a in readme_load_mnist(data_dir, kind)]

    def ours(_):
        return [a for kind in ("train", "t10k") for a in load_mnist(data_dir, kind)]

    def cold(i):
        return dataset_arrays(
            with_cache(scratch / f"cold-{i}-{time.monotonic_ns()}", lambda: load_dataset("fashion", data_dir))
        )

    def warm_load(_):
        return dataset_arrays(with_cache(warm, lambda: load_dataset("fashion", data_dir)))

    return {
        "README reader": ("gzip.open + np.frombuffer, no checks", readme),
        "fmnist.data.load_mnist": ("gunzip + IDX header and count checks", ours),
        "load_dataset, cold cache": ("verify 4 files + gunzip + write .npy + memory map", cold),
        "load_dataset, warm cache": ("memo check + np.load(mmap_mode='r')", warm_load),
    }


def machine() -> dict:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(
            next(
                x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")
            ).split()[1]
        )
    except (OSError, StopIteration, ValueError):
        mem_kb = 0
    try:
        git = ["git", "-C", str(HERE)]
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", ":/src/fmnist/data"], capture_output=True, text=True
        )
        commit = commit.stdout.strip() + ("+dirty data layer" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "commit": commit,
        "load_average": os.getloadavg(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=SYSTEM_COPY, help="folder with the four real .gz files")
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs per method (the median is reported)"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "data_load.json")
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="fmnist-bench-") as tmp:
        table = methods(args.data_dir, Path(tmp))
        reference = None
        for name, (what, fn) in table.items():
            fn(-1)  # warm-up: imports, page cache of the .gz files
            opens, fulls = [], []
            for i in range(args.repeats):
                t0 = time.perf_counter()
                arrays = fn(i)
                t1 = time.perf_counter()
                total = touch(arrays)
                t2 = time.perf_counter()
                opens.append(t1 - t0)
                fulls.append(t2 - t0)
                reference = total if reference is None else reference
                if total != reference:
                    raise SystemExit(
                        f"{name}: arrays differ from the README reader's (sum {total} != {reference})"
                    )
                del arrays
            rows.append(
                {
                    "method": name,
                    "what": what,
                    "open_s": statistics.median(opens),
                    "full_read_s": statistics.median(fulls),
                    "open_times_s": opens,
                    "full_read_times_s": fulls,
                    "repeats": args.repeats,
                }
            )
            print(
                f"{name}: open {rows[-1]['open_s']:.4f} s, open + full read {rows[-1]['full_read_s']:.4f} s",
                file=sys.stderr,
            )

    base = rows[0]["full_read_s"]
    lines = [
        "| method | what it does | open (median s) | open + full read (median s) | vs README reader |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['what']} | {r['open_s']:.4f} | {r['full_read_s']:.4f} | {base / r['full_read_s']:.1f}x |"
        )
    info = machine()
    report = {
        "benchmark": "data_load",
        "command": "nice -n 19 .venv/bin/python benchmarks/bench_data_load.py --repeats " + str(args.repeats),
        "data_dir": args.data_dir,
        "machine": info,
        "rows": rows,
        "markdown": "\n".join(lines),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"Machine: {info['cpus']} x {info['cpu']}, {info['memory_gib']} GiB RAM, Python {info['python']}, "
        f"numpy {info['numpy']}, commit {info['commit']}, load average {info['load_average'][0]:.1f}"
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
