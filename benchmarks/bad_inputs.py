#!/usr/bin/env python
"""Bad inputs: try hostile and careless inputs on every ``fmnist`` command and count the answers.

The promise (issue #13): every bad input gets ONE clear line on stderr and a non-zero exit, never a
traceback; a model file never runs code; no command destroys or corrupts a user's files; no temp
file is left behind. Each case below is one ``fmnist`` subprocess (or a few, or an HTTP request to
one ``fmnist serve``) run in a scratch folder of its own, with a timeout, with the data from the
system copy and ``$FMNIST_CACHE`` in the scratch folder. Per case it records:

- the exit status, and whether it timed out;
- ``one_line``: stderr, as a terminal would show it (a progress bar that is redrawn with ``\\r`` and
  cleared leaves nothing), is exactly one non-blank line, and that line is a clear message:
  ``fmnist[ SUBCOMMAND...]: error: ...`` (``fmnist: terminated`` / ``fmnist: interrupted`` for the
  signal cases), containing neither ``internal error`` nor ``Traceback``;
- ``traceback``: ``Traceback (most recent call last)`` appeared on stdout or stderr;
- ``code_ran``: the marker file that a hostile pickle's ``os.system("touch MARKER")`` would create
  appeared (None for cases without a hostile pickle);
- ``data_lost``: files that existed in the case's folder before the command (the user's files, the
  run being resumed, damaged inputs, ...) and afterwards are gone or have other bytes;
- ``temp_left``: new entries named like temp files (``.*.tmp``, ``*.tmp.*``, ``*.part``, ``.tmp*``,
  ``tmpXXXXXX``) or new hidden folders, anywhere in the case's folder (its cache included).

What is expected is marked per case: ``error`` (non-zero exit and one clear line; some cases also
require words in that line, e.g. the field names a resume refuses), ``ok`` (exit 0, with a note in
the output where the input was adjusted, e.g. ``--threads 999`` capped at the cores) or ``either``.
A case passes when everything it records matches what is expected; the per-command table counts.

    .venv/bin/python benchmarks/bad_inputs.py               # all cases, ~3-5 minutes on 2 cores
    .venv/bin/python benchmarks/bad_inputs.py --quick       # the fast subset the tests run
    .venv/bin/python benchmarks/bad_inputs.py --only 'evaluate|predict/hostile' --jobs 1

A full run writes benchmarks/results/bad_inputs.json (every case) and bad_inputs.md (the table and
the failing cases); runs with --only or --quick write nothing unless --out is given.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import datetime
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
DATA_DIR = Path(os.environ.get("FMNIST_BAD_INPUTS_DATA", "/usr/share/datasets/fashion-mnist"))
DATA_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
# The smallest training that still runs the whole trainer: a few seconds, one thread.
TINY = ["--train-limit", "300", "--val-size", "100", "--epochs", "1", "--batch-size", "64", "--threads", "1"]
DEAD_MIRROR = "http://127.0.0.1:9/"  # nothing listens on the discard port: no case ever reaches the internet

CLEAR_ERROR = re.compile(r"^fmnist(?: [a-z][\w-]*)*: error: \S")
# Progress and notes a command prints on success too; they may precede the error line.
INFO_LINE = re.compile(r"^(?:downloading \S+ .*from \d+ mirror|note: )")
CLEAR_SIGNAL = re.compile(r"^fmnist: (?:terminated|interrupted)\b")
UNCLEAR = re.compile(r"internal error|Traceback", re.IGNORECASE)
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^Traceback: ", re.MULTILINE)  # Python's, Dask's
TEMP_NAME = re.compile(r"(^\.tmp|^tmp[\w-]{6,}$|\.tmp$|\.tmp\.|\.part$)")


def fmnist_argv() -> list[str]:
    """The installed ``fmnist`` entry point beside this Python, else ``python -m fmnist``."""
    exe = Path(sys.executable).with_name("fmnist")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "fmnist"]


# ----------------------------------------------------------------------------------------------------
# Inputs: files a careless or hostile user might hand over


def evil_pickle(path: Path, marker: Path, nested: bool = False) -> None:
    """A torch file whose unpickling runs ``touch MARKER`` (as a whole, or hidden in a model record)."""
    import torch

    class E:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path.parent.mkdir(parents=True, exist_ok=True)
    obj: Any = E()
    if nested:
        obj = {"format": "fmnist-model/1", "arch": "fastcnn", "arch_kwargs": {}, "classes": [], "x": E()}
    torch.save(obj, path)


def torch_save(obj: Any, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(path: Path, side: int = 7000) -> None:
    """A decompression bomb: side x side RGBA zeros, zlib level 9 (7000: ~190 KB, 196 MB decoded)."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + 4 * side)  # filter byte + pixels
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")
    )


def huge_header_png(path: Path) -> None:
    """A PNG header claiming 100000 x 100000 RGBA, with hardly any data: refuse from the header."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 6, 0, 0, 0)
    body = zlib.compress(b"\x00" * 4000, 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", body))


def shirt_png(path: Path) -> None:
    """A plain 28x28 picture (a light square on black): a valid input."""
    from PIL import Image

    img = Image.new("L", (28, 28), 0)
    img.paste(200, (6, 4, 22, 24))
    img.save(path)


# ----------------------------------------------------------------------------------------------------
# Cases


@dataclasses.dataclass
class Ctx:
    """One case's world: its folder (the subprocess's cwd), the shared fixtures, what to watch."""

    d: Path
    fx: Path
    vars: dict[str, str] = dataclasses.field(default_factory=dict)
    markers: list[Path] = dataclasses.field(default_factory=list)
    mutable: list[str] = dataclasses.field(default_factory=list)  # glob patterns that may change
    cleanup: list[Callable[[], None]] = dataclasses.field(default_factory=list)
    info: dict[str, Any] = dataclasses.field(default_factory=dict)  # extra figures for the record

    # -- helpers the cases' prepare functions use
    def run_copy(self, name: str = "run", source: str = "run") -> Path:
        dst = self.d / name
        shutil.copytree(self.fx / source, dst)
        self.vars[name] = str(dst)
        return dst

    def evil(self, path: Path, nested: bool = False) -> Path:
        marker = self.d / f"PWNED-{len(self.markers)}"
        evil_pickle(path, marker, nested)
        self.markers.append(marker)
        return path

    def user_folder(self, name: str = "mine") -> Path:
        """A folder of the user's own files (not an fmnist run): model.pt, metrics.jsonl, notes."""
        user = self.d / name
        user.mkdir(parents=True, exist_ok=True)
        (user / "model.pt").write_bytes(b"my own model, not fmnist's\n" + os.urandom(64))
        (user / "metrics.jsonl").write_text('{"my": "own metrics"}\n')
        (user / "notes.txt").write_text("three months of notes\n")
        self.vars[name] = str(user)
        return user


@dataclasses.dataclass
class Case:
    name: str  # "command/what", unique
    argv: list[str]  # after `fmnist`; {d} {fx} {data} {port} {mirror} {run} ... from Ctx.vars
    expect: str = "error"  # error | ok | either
    finding: str = "own"  # the item number, or "own" for an idea of this harness
    prepare: Callable[[Ctx], None] | None = None
    note: str | None = None  # regex: the error line (error) or the output (ok) must match it
    timeout: float = 60.0
    env: dict[str, str | None] = dataclasses.field(default_factory=dict)
    own_cache: bool = False  # a fresh empty $FMNIST_CACHE in the case folder
    limits: dict[str, int] = dataclasses.field(default_factory=dict)  # fsize / as, bytes
    runs: int = 1  # run the command this many times (a leak per run shows as several files)
    mode: str = "plain"  # plain | serve (must not start serving) | signal
    signal_when: str | None = None  # mode signal: glob in {d} whose appearance triggers the signal
    signum: int = signal.SIGTERM
    check: Callable[[Ctx, dict], list[str]] | None = None  # extra problems
    quick: bool = False
    allow_left: list[str] = dataclasses.field(default_factory=list)  # regexes of leftovers that are fine
    lock: str | None = None  # cases sharing a lock run one at a time (a Dask cluster each)

    @property
    def command(self) -> str:
        head = self.name.split("/", 1)[0]
        return head.replace("-", " ") if head.startswith(("data-", "bench-", "viz-")) else head


def run_files(c: Ctx) -> None:
    c.run_copy()


def data_copy(c: Ctx, name: str = "data", damage: Callable[[Path], None] | None = None) -> Path:
    dst = c.d / name
    dst.mkdir()
    for f in DATA_FILES:
        shutil.copy(DATA_DIR / f, dst / f)
    if damage:
        damage(dst)
    c.vars[name] = str(dst)
    return dst


def truncate(path: Path, keep: int | None = None) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2 if keep is None else keep])


def record_of_run(c: Ctx) -> dict:
    """The good run's model record (our own file, so a full unpickle is safe here)."""
    import torch

    return torch.load(c.fx / "run" / "model.pt", map_location="cpu", weights_only=False)


def craft_model(change: Callable[[dict], None]) -> Callable[[Ctx], None]:
    def prepare(c: Ctx) -> None:
        run = c.run_copy()
        record = record_of_run(c)
        change(record)
        torch_save(record, run / "model.pt")

    return prepare


def damaged(kind: str, filename: str = "model.pt") -> Callable[[Ctx], None]:
    """A run whose model.pt / checkpoint.pt is truncated, random bytes, empty, a list, or a hostile pickle."""

    def prepare(c: Ctx) -> None:
        run = c.run_copy()
        path = run / filename
        if kind == "truncated":
            truncate(path)
        elif kind == "random":
            path.write_bytes(os.urandom(4096))
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "list":
            torch_save([1, 2, 3], path)
        elif kind == "hostile":
            c.evil(path)
        elif kind == "hostile-nested":
            c.evil(path, nested=True)
        elif kind == "text":
            path.write_text("this is not a model\n")
        elif kind == "directory":
            path.unlink()
            path.mkdir()
        else:
            raise ValueError(kind)

    return prepare


def foreign_checkpoint(c: Ctx) -> None:
    run = c.run_copy()
    shutil.copy(c.fx / "run_tutorial" / "checkpoint.pt", run / "checkpoint.pt")


def config_change(change: Callable[[dict], None], raw: str | None = None) -> Callable[[Ctx], None]:
    def prepare(c: Ctx) -> None:
        run = c.run_copy()
        path = run / "config.json"
        if raw is not None:
            path.write_text(raw)
            return
        cfg = json.loads(path.read_text())
        change(cfg)
        path.write_text(json.dumps(cfg, indent=2))

    return prepare


def write_file(
    rel: str, content: str | bytes, also: Callable[[Ctx], None] | None = None
) -> Callable[[Ctx], None]:
    def prepare(c: Ctx) -> None:
        if also:
            also(c)
        path = c.d / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())

    return prepare


def images(c: Ctx) -> None:
    c.run_copy()
    pics = c.d / "pics"
    shutil.copytree(c.fx / "images", pics)
    (pics / "emptydir").mkdir()


def both(*fns: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
    def prepare(c: Ctx) -> None:
        for fn in fns:
            fn(c)

    return prepare


def mkdir(rel: str) -> Callable[[Ctx], None]:
    return lambda c: (c.d / rel).mkdir(parents=True, exist_ok=True)


def hold_port(c: Ctx) -> None:
    """Listen on {port} first, so the command finds it taken."""
    s = socket.socket()
    s.bind(("127.0.0.1", int(c.vars["port"])))
    s.listen(1)
    c.cleanup.append(s.close)


def user_png_tree(c: Ctx) -> None:
    """An existing fashion-train/ folder holding the user's own files (finding 10)."""
    root = c.d / "exported" / "fashion-train"
    (root / "0-t-shirt-top").mkdir(parents=True)
    (root / "0-t-shirt-top" / "my-own-photo.png").write_bytes(b"\x89PNG user's own bytes")
    (root / "README-mine.txt").write_text("my notes about this folder\n")


def check_modes(c: Ctx, rec: dict) -> list[str]:
    """New folders get the usual permissions (0777 less the umask: 0755 under 022), not mkdtemp's 0700."""
    mask = os.umask(0)
    os.umask(mask)
    want = 0o777 & ~mask
    bad = []
    out = c.d / "exported"
    for p in [out, *out.rglob("*")]:
        if p.is_dir() and (p.stat().st_mode & 0o777) != want:
            bad.append(f"{p.relative_to(c.d)} is mode {p.stat().st_mode & 0o777:04o}, not {want:04o}")
    return bad[:3]


def check_bad_files(limit: int) -> Callable[[Ctx, dict], list[str]]:
    def check(c: Ctx, rec: dict) -> list[str]:
        counts: dict[str, int] = {}
        for p in (c.d / "cache").rglob("*.bad-*"):
            counts[p.name.split(".bad-")[0]] = counts.get(p.name.split(".bad-")[0], 0) + 1
        c.info["quarantined"] = counts
        return [
            f"{n} quarantined copies of {k} kept (at most {limit})" for k, n in counts.items() if n > limit
        ]

    return check


def check_no_part(c: Ctx, rec: dict) -> list[str]:
    parts = [str(p.relative_to(c.d)) for p in c.d.rglob("*.part")]
    return [f".part left: {', '.join(parts)}"] if parts else []


def check_sent(limit: int) -> Callable[[Ctx, dict], list[str]]:
    def check(c: Ctx, rec: dict) -> list[str]:
        sent = MIRROR.max_sent("endless")
        c.info["max_bytes_sent_one_connection"] = sent
        return [f"read {sent / 2**20:.0f} MiB of an endless file (no size cap)"] if sent > limit else []

    return check


def check_threads_capped(c: Ctx, rec: dict) -> list[str]:
    """The run must really use at most the machine's cores (the trainer prints "N threads")."""
    said = re.findall(r"(\d+) threads", c.info.get("_stdout", ""))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if said and int(said[-1]) > cores:
        return [f"ran with {said[-1]} threads on {cores} cores"]
    return []


def results_row(c: Ctx) -> None:
    """A results file with one real row (the repository's own, else a minimal one)."""
    sample = REPO / "benchmarks" / "results" / "sklearn-quick.jsonl"
    row = (
        sample.read_text().splitlines()[0]
        if sample.exists()
        else json.dumps(
            {
                "key": "fashion/x",
                "name": "x",
                "family": "x",
                "dataset": "fashion",
                "status": "done",
                "scores": [0.9],
                "mean_accuracy": 0.9,
            }
        )
    )
    (c.d / "r.jsonl").write_text(row + "\n")


def warm_run_dir(c: Ctx) -> None:
    """For --resume --epochs: the run must be extendable."""
    c.run_copy()
    c.mutable += ["run/*"]


def sweep_plan(c: Ctx, extra_base: str = "", grid: str = "seed = [0]") -> Path:
    plan = c.d / "plan.toml"
    plan.write_text(
        "[base]\ntrain_limit = 300\nval_size = 100\nepochs = 1\nbatch_size = 64\n"
        f"{extra_base}\n[grid]\n{grid}\n"
    )
    return plan


def sweep_resumable_evil(c: Ctx) -> None:
    """A sweep folder whose run (as named by the plan) has a config.json and a hostile checkpoint.pt."""
    sys.path.insert(0, str(REPO / "src"))
    from fmnist.sweep.plan import run_name

    sweep_plan(c)
    run = c.d / "sweep" / run_name({"seed": 0})
    shutil.copytree(c.fx / "run", run)
    c.evil(run / "checkpoint.pt")


def sweep_finished(evil: bool = True, evaluation: str | None = None) -> Callable[[Ctx], None]:
    """Two finished sweep runs (a real evaluation.json each, unless ``evaluation`` replaces it); with
    ``evil`` their model.pt is a hostile pickle, which ``--ensemble`` loads."""

    def prepare(c: Ctx) -> None:
        sys.path.insert(0, str(REPO / "src"))
        from fmnist.sweep.plan import run_name

        sweep_plan(c, grid="seed = [0, 1]")
        real = c.fx / "evaluation.json"  # written by the fixtures' evaluate
        for seed in (0, 1):
            run = c.d / "sweep" / run_name({"seed": seed})
            shutil.copytree(c.fx / "run", run)
            text = evaluation if evaluation is not None else real.read_text()
            (run / "evaluation.json").write_text(text)
            if evil:
                c.evil(run / "model.pt")

    return prepare


MEMORY_NOTE = r"(?i)\d[\d.,]*\s*[KMGTP]i?B|memory|parameters"
THREADS_NOTE = (
    r"(?i)\bthreads?\b[^\n]*\b(capped|cores?|cpus?|limit(ed)?|at most|reduced)\b"
    r"|\b(capped|cores?|cpus?)\b[^\n]*\bthreads?\b"
)


def build_cases() -> list[Case]:
    """Every case, in table order. Pure data: building the inputs happens when a case runs."""
    cases: list[Case] = []

    def add(name: str, argv: list[str], **fields: Any) -> None:
        cases.append(Case(name, argv, **fields))

    hostile_only = lambda c: c.evil(c.d / "evil" / "model.pt")  # noqa: E731

    # ---------------------------------------------------------------- data
    dn = {"FMNIST_DATA_DIR": None}
    add("data-verify/missing-folder", ["data", "verify", "--data-dir", "{d}/nowhere"], env=dn)
    add(
        "data-verify/empty-folder",
        ["data", "verify", "--data-dir", "{d}/empty"],
        prepare=mkdir("empty"),
        env=dn,
    )
    add(
        "data-verify/truncated-file",
        ["data", "verify", "--data-dir", "{data}"],
        env=dn,
        prepare=lambda c: data_copy(c, damage=lambda p: truncate(p / DATA_FILES[1])),
    )
    add(
        "data-verify/random-bytes-file",
        ["data", "verify", "--data-dir", "{data}"],
        env=dn,
        prepare=lambda c: data_copy(c, damage=lambda p: (p / DATA_FILES[3]).write_bytes(os.urandom(5000))),
    )
    add(
        "data-verify/empty-file",
        ["data", "verify", "--data-dir", "{data}"],
        env=dn,
        prepare=lambda c: data_copy(c, damage=lambda p: (p / DATA_FILES[1]).write_bytes(b"")),
    )
    add("data-info/unknown-dataset", ["data", "info", "--dataset", "bogus"], quick=True)
    add(
        "data-info/data-dir-is-a-file",
        ["data", "info", "--data-dir", "{d}/f.txt"],
        env=dn,
        prepare=write_file("f.txt", "not a folder\n"),
    )
    add(
        "data-info/full-disk-cache-twice",
        ["data", "info"],
        finding="8",
        own_cache=True,
        runs=2,
        limits={"fsize": 1 << 20},
        timeout=90,
        expect="either",
        note=r"(?i)cache",
    )
    add("data-fetch/retries-negative", ["data", "fetch", "--retries", "-1"])
    add("data-fetch/timeout-nan", ["data", "fetch", "--timeout", "nan"])
    add("data-fetch/timeout-negative", ["data", "fetch", "--timeout", "-5"])
    add(
        "data-fetch/mirror-not-a-url",
        ["data", "fetch", "--mirror", "not a url"],
        own_cache=True,
        env={"FMNIST_DATA_DIR": None, "FMNIST_NO_SYSTEM_DATA": "1"},
    )
    dl = {"FMNIST_DATA_DIR": None, "FMNIST_NO_SYSTEM_DATA": "1", "FMNIST_MIRROR": None}
    add(
        "data-fetch/mirror-streams-forever",
        ["data", "fetch", "--mirror", "{mirror}/endless/", "--retries", "1"],
        finding="9",
        own_cache=True,
        env=dl,
        timeout=60,
        check=lambda c, r: check_sent(64 << 20)(c, r) + check_no_part(c, r),
    )
    add(
        "data-fetch/mirror-wrong-bytes-4-runs",
        ["data", "fetch", "--mirror", "{mirror}/wrong/", "--retries", "2"],
        finding="9",
        own_cache=True,
        env=dl,
        runs=4,
        timeout=60,
        check=lambda c, r: check_bad_files(3)(c, r) + check_no_part(c, r),
    )
    add(
        "data-fetch/mirror-one-byte-a-second",
        ["data", "fetch", "--mirror", "{mirror}/slow/", "--retries", "1", "--timeout", "2"],
        finding="9",
        own_cache=True,
        env=dl,
        timeout=45,
        allow_left=[r"\.part$"],
    )
    add(
        "data-export/png-over-user-folder",
        ["data", "export", "--format", "png", "--split", "train", "--limit", "20"],
        finding="10",
        prepare=user_png_tree,
    )
    add(
        "data-export/png-new-folder-mode",
        ["data", "export", "--format", "png", "--split", "t10k", "--limit", "20"],
        finding="10",
        expect="ok",
        check=check_modes,
    )
    add(
        "data-export/sigterm-during-png",
        ["data", "export", "--format", "png", "--split", "train", "--out", "out"],
        finding="11",
        mode="signal",
        signal_when="out/.*",
        timeout=60,
    )
    add(
        "data-export/sigint-during-png",
        ["data", "export", "--format", "png", "--split", "train", "--out", "out"],
        mode="signal",
        signal_when="out/.*",
        signum=signal.SIGINT,
        timeout=60,
    )
    add(
        "data-export/full-disk-npz",
        ["data", "export", "--format", "npz", "--out", "out"],
        limits={"fsize": 1 << 20},
        timeout=60,
    )
    add("data-export/limit-negative", ["data", "export", "--limit", "-5", "--format", "csv"])
    add("data-export/limit-zero", ["data", "export", "--limit", "0", "--format", "csv"])
    add(
        "data-export/out-is-a-user-file",
        ["data", "export", "--format", "csv", "--limit", "10", "--out", "{d}/mine.txt"],
        prepare=write_file("mine.txt", "my file\n"),
    )
    add("data-sprite/columns-zero", ["data", "sprite", "--columns", "0"])
    add("data-sprite/columns-negative", ["data", "sprite", "--columns", "-3"])
    add("data-sprite/seed-negative", ["data", "sprite", "--seed", "-1"])
    add("data-sprite/out-is-a-folder", ["data", "sprite", "--out", "{d}/adir"], prepare=mkdir("adir"))

    # ---------------------------------------------------------------- train
    T = ["train", *TINY, "--out", "{d}/out"]
    R = ["train", "--resume", "--out", "{run}"]
    add(
        "train/resume-hostile-checkpoint",
        R,
        finding="1",
        prepare=damaged("hostile", "checkpoint.pt"),
        quick=True,
    )
    add("train/resume-hostile-in-record", R, prepare=damaged("hostile-nested", "checkpoint.pt"))
    for kind in ("truncated", "random", "empty", "list"):
        add(
            f"train/resume-{kind}-checkpoint",
            R,
            finding="5",
            prepare=damaged(kind, "checkpoint.pt"),
            quick=kind == "list",
        )
    add("train/resume-other-architecture", R, finding="5", prepare=foreign_checkpoint)
    add(
        "train/resume-config-epochs-string",
        R,
        finding="5",
        prepare=config_change(lambda cfg: cfg.update(epochs="twelve")),
    )
    add("train/resume-config-not-json", R, prepare=config_change(None, raw="{ not json"))
    add("train/resume-config-list", R, prepare=config_change(None, raw="[1, 2, 3]\n"))
    add("train/resume-no-run-there", ["train", "--resume", "--out", "{d}/nothing"])
    add("train/resume-lr-disagrees", [*R, "--lr", "0.5"], finding="11", prepare=run_files, note=r"\blr\b")
    add(
        "train/resume-batch-size-disagrees",
        [*R, "--batch-size", "32"],
        finding="11",
        prepare=run_files,
        note=r"batch",
    )
    add(
        "train/resume-more-epochs",
        [*R, "--epochs", "2", "--threads", "1"],
        finding="11",
        expect="either",
        prepare=warm_run_dir,
        note=r"(?i)epoch",
        timeout=90,
    )
    add("train/out-is-user-folder", [*T[:-1], "{mine}"], finding="3", prepare=lambda c: c.user_folder())
    add("train/out-is-a-file", [*T[:-1], "{d}/f.txt"], prepare=write_file("f.txt", "my file\n"))
    for flag, value, finding in [
        ("--seed", "-1", "5"),
        ("--seed", str(2**32), "own"),
        ("--warmup-epochs", "inf", "5"),
        ("--lr", "inf", "6"),
        ("--lr", "1e30", "6"),
        ("--weight-decay", "inf", "6"),
        ("--lr", "nan", "own"),
        ("--lr", "0", "own"),
        ("--lr", "-0.1", "own"),
        ("--momentum", "nan", "own"),
        ("--momentum", "2", "own"),
        ("--label-smoothing", "1.5", "own"),
        ("--erase-p", "2", "own"),
        ("--ema-decay", "1", "own"),
        ("--epochs", "0", "own"),
        ("--epochs", "-1", "own"),
        ("--epochs", "abc", "listed"),
        ("--batch-size", "0", "own"),
        ("--val-size", "-1", "own"),
        ("--train-limit", "0", "own"),
        ("--crop-pad", "-1", "own"),
        ("--patience", "-1", "own"),
        ("--eval-batch-size", "0", "own"),
        ("--threads", "-1", "own"),
        ("--width", "0", "own"),
        ("--width", "-8", "own"),
        ("--depth", "-1", "own"),
        ("--stop-after", "-1", "own"),
        ("--model", "bogus", "own"),
        ("--preset", "bogus", "own"),
        ("--optimizer", "bogus", "own"),
        ("--schedule", "bogus", "own"),
        ("--device", "bogus", "own"),
        ("--device", "meta", "own"),
        ("--device", "cuda:7", "own"),
        ("--dataset", "bogus", "own"),
    ]:
        quick = (flag, value) in {
            ("--seed", "-1"),
            ("--lr", "inf"),
            ("--warmup-epochs", "inf"),
            ("--lr", "1e30"),
        }
        add(f"train/{flag[2:]}={value}", [*T, flag, value], finding=finding, quick=quick)
    add("train/val-size=60000", [*T, "--val-size", "60000"], expect="either", note=r"(?i)val")
    add(
        "train/threads=999",
        [*T, "--threads", "999"],
        finding="7",
        expect="ok",
        note=THREADS_NOTE,
        timeout=120,
        check=check_threads_capped,
    )
    add(
        "train/width=5000",
        [*T, "--width", "5000"],
        finding="7",
        note=MEMORY_NOTE,
        timeout=60,
        limits={"as": 6 << 30},
    )
    add(
        "train/toml-seed-negative",
        [*T, "--config", "{d}/c.toml"],
        finding="5",
        quick=True,
        prepare=write_file("c.toml", "seed = -1\n"),
    )
    add("train/toml-lr-inf", [*T, "--config", "{d}/c.toml"], prepare=write_file("c.toml", "lr = inf\n"))
    add("train/toml-lr-nan", [*T, "--config", "{d}/c.toml"], prepare=write_file("c.toml", "lr = nan\n"))
    add(
        "train/toml-warmup-string",
        [*T, "--config", "{d}/c.toml"],
        prepare=write_file("c.toml", 'warmup_epochs = "one"\n'),
    )
    add(
        "train/toml-unknown-key",
        [*T, "--config", "{d}/c.toml"],
        prepare=write_file("c.toml", "learning_rate = 0.1\n"),
    )
    add(
        "train/toml-malformed",
        [*T, "--config", "{d}/c.toml"],
        prepare=write_file("c.toml", "lr = = 0.1\n["),
    )
    add("train/toml-binary", [*T, "--config", "{d}/c.toml"], prepare=write_file("c.toml", os.urandom(300)))
    add("train/toml-missing", [*T, "--config", "{d}/nope.toml"])
    add("train/data-dir-empty", [*T, "--data-dir", "{d}/empty"], prepare=mkdir("empty"))
    add(
        "train/data-dir-truncated-file",
        [*T, "--data-dir", "{data}"],
        prepare=lambda c: data_copy(c, damage=lambda p: truncate(p / DATA_FILES[0])),
    )
    add("train/full-disk-model-save", T, limits={"fsize": 100_000}, timeout=60)
    add(
        "train/sigterm-mid-training",
        [
            "train",
            "--train-limit",
            "300",
            "--val-size",
            "100",
            "--epochs",
            "400",
            "--batch-size",
            "64",
            "--threads",
            "1",
            "--out",
            "{d}/out",
        ],
        mode="signal",
        signal_when="out/metrics.jsonl",
        timeout=90,
    )

    # ---------------------------------------------------------------- evaluate
    for kind, finding in [
        ("hostile", "1"),
        ("hostile-nested", "own"),
        ("truncated", "own"),
        ("random", "own"),
        ("empty", "own"),
        ("list", "own"),
        ("text", "own"),
        ("directory", "own"),
    ]:
        add(
            f"evaluate/{kind}-model",
            ["evaluate", "{run}"],
            finding=finding,
            prepare=damaged(kind),
            quick=kind in ("hostile", "hostile-nested"),
        )
    add(
        "evaluate/model-without-arch",
        ["evaluate", "{run}"],
        finding="5",
        quick=True,
        prepare=craft_model(lambda r: r.pop("arch")),
    )
    add(
        "evaluate/model-without-mean",
        ["evaluate", "{run}"],
        finding="5",
        prepare=craft_model(lambda r: r.pop("mean")),
    )
    add(
        "evaluate/model-arch-kwargs-width-8",
        ["evaluate", "{run}"],
        finding="5",
        prepare=craft_model(lambda r: r.update(arch_kwargs={"width": 8})),
    )
    add(
        "evaluate/model-mean-string",
        ["evaluate", "{run}"],
        prepare=craft_model(lambda r: r.update(mean="x")),
    )
    add("evaluate/model-std-zero", ["evaluate", "{run}"], prepare=craft_model(lambda r: r.update(std=0.0)))
    add(
        "evaluate/model-no-classes",
        ["evaluate", "{run}"],
        prepare=craft_model(lambda r: r.update(classes=[])),
    )
    add("evaluate/no-such-run", ["evaluate", "{d}/nothing"])
    add("evaluate/empty-folder", ["evaluate", "{d}/empty"], prepare=mkdir("empty"))
    add("evaluate/run-is-a-text-file", ["evaluate", "{d}/f.txt"], prepare=write_file("f.txt", "hello\n"))
    add("evaluate/device-meta", ["evaluate", "{run}", "--device", "meta"], prepare=run_files)
    add("evaluate/device-bogus", ["evaluate", "{run}", "--device", "bogus"], prepare=run_files)
    add("evaluate/device-cuda-7", ["evaluate", "{run}", "--device", "cuda:7"], prepare=run_files)
    add(
        "evaluate/data-dir-empty",
        ["evaluate", "{run}", "--data-dir", "{d}/empty"],
        prepare=both(run_files, mkdir("empty")),
    )

    # ---------------------------------------------------------------- predict
    P = ["predict", "{run}"]
    add(
        "predict/hostile-model",
        [*P, "{d}/pics/shirt.png"],
        finding="1",
        quick=True,
        prepare=both(images, lambda c: c.evil(c.d / "run" / "model.pt")),
    )
    add(
        "predict/hostile-model-pt-path",
        ["predict", "{d}/evil/model.pt", "{d}/pics/shirt.png"],
        finding="1",
        prepare=both(images, hostile_only),
    )
    add(
        "predict/hostile-nested-model",
        [*P, "{d}/pics/shirt.png"],
        prepare=both(images, lambda c: c.evil(c.d / "run" / "model.pt", nested=True)),
    )
    add(
        "predict/device-meta",
        [*P, "{d}/pics/shirt.png", "--device", "meta"],
        finding="5",
        prepare=images,
        quick=True,
    )
    add("predict/device-cuda-7", [*P, "{d}/pics/shirt.png", "--device", "cuda:7"], prepare=images)
    add("predict/zero-byte-image", [*P, "{d}/pics/empty.png"], prepare=images)
    add("predict/text-named-png", [*P, "{d}/pics/text.png"], prepare=images)
    add("predict/truncated-png", [*P, "{d}/pics/truncated.png"], prepare=images)
    add(
        "predict/decompression-bomb",
        [*P, "{d}/pics/bomb.png"],
        prepare=images,
        timeout=60,
        limits={"as": 6 << 30},
    )
    add("predict/huge-header-png", [*P, "{d}/pics/huge-header.png"], prepare=images)
    add("predict/no-such-image", [*P, "{d}/pics/nope.png"], prepare=images)
    add("predict/folder-without-pictures", [*P, "{d}/pics/emptydir"], prepare=images)
    add("predict/top-k-zero", [*P, "{d}/pics/shirt.png", "--top-k", "0"], prepare=images)
    add("predict/top-k-1000", [*P, "{d}/pics/shirt.png", "--top-k", "1000"], prepare=images)
    add("predict/batch-size-zero", [*P, "{d}/pics/shirt.png", "--batch-size", "0"], prepare=images)
    add(
        "predict/model-truncated",
        [*P, "{d}/pics/shirt.png"],
        prepare=both(images, lambda c: truncate(c.d / "run" / "model.pt")),
    )
    add(
        "predict/model-without-mean",
        [*P, "{d}/pics/shirt.png"],
        finding="5",
        prepare=both(
            craft_model(lambda r: r.pop("mean")), lambda c: shutil.copytree(c.fx / "images", c.d / "pics")
        ),
    )
    add(
        "predict/onnx-that-is-text",
        ["predict", "{d}/model.onnx", "{d}/pics/shirt.png"],
        prepare=both(images, write_file("model.onnx", "not onnx\n")),
    )
    add(
        "predict/save-processed-is-a-file",
        [*P, "{d}/pics/shirt.png", "--save-processed", "{d}/f.txt"],
        prepare=both(images, write_file("f.txt", "my file\n")),
    )

    # ---------------------------------------------------------------- calibration and photos (#15)
    def calibration(content: str) -> Callable[[Ctx], None]:
        return both(images, write_file("run/calibration.json", content))

    add("predict/calibration-truncated", [*P, "{d}/pics/shirt.png"], finding="15", prepare=calibration("{"))
    add(
        "predict/calibration-temperature-nan",
        [*P, "{d}/pics/shirt.png"],
        finding="15",
        prepare=calibration('{"format": "fmnist-calibration/1", "temperature": NaN, "abstain_threshold": 0}'),
    )
    add(
        "predict/calibration-unknown-score",
        [*P, "{d}/pics/shirt.png"],
        finding="15",
        prepare=calibration('{"format": "fmnist-calibration/1", "temperature": 1, "abstain_score": "vibes"}'),
    )
    add(
        "predict/calibration-of-another-model",
        [*P, "{d}/pics/shirt.png"],
        expect="ok",
        finding="15",
        note="shirt.png",
        prepare=calibration('{"format": "fmnist-calibration/1", "temperature": 0.5, "model_sha256": "0000"}'),
    )
    labels = "file,fashion_mnist_class\n"
    add("calibrate/labels-without-photos", ["calibrate", "{run}", "--labels", "{d}/x.csv"], finding="15")
    add(
        "calibrate/photos-all-in-class",
        ["calibrate", "{run}", "--photos", "{d}/pics"],
        finding="15",
        prepare=both(images, write_file("pics/labels.csv", labels + "shirt.png,Shirt\n")),
    )
    BP = ["bench", "photos", "{run}", "{d}/pics", "--out", "{d}/out"]
    add("bench-photos/no-labels-file", BP, finding="15", prepare=images)
    add(
        "bench-photos/path-outside-the-folder",
        BP,
        finding="15",
        prepare=both(images, write_file("pics/labels.csv", labels + "../../../etc/passwd,Coat\n")),
    )
    add(
        "bench-photos/unknown-label",
        BP,
        finding="15",
        prepare=both(images, write_file("pics/labels.csv", labels + "shirt.png,Hat\n")),
    )
    add(
        "bench-photos/labels-not-utf8",
        BP,
        finding="15",
        prepare=both(images, write_file("pics/labels.csv", b"file,fashion_mnist_class\n\xff\xfe,Coat\n")),
    )
    add(
        "bench-photos/out-is-a-user-folder",
        ["bench", "photos", "{run}", "{d}/pics", "--out", "{d}/mine"],
        finding="15",
        prepare=both(
            images,
            write_file("pics/labels.csv", labels + "shirt.png,Shirt\n"),
            write_file("mine/keep.txt", "mine\n"),
        ),
    )

    # ---------------------------------------------------------------- export
    E = ["export", "{run}"]
    add("export/hostile-model", E, finding="1", prepare=damaged("hostile"), quick=True)
    add("export/hostile-nested-model", E, prepare=damaged("hostile-nested"))
    add(
        "export/out-is-the-model",
        [*E, "--out", "{run}/model.pt"],
        finding="2",
        prepare=run_files,
        quick=True,
    )
    add(
        "export/out-is-the-model-torchscript",
        [*E, "--format", "torchscript", "--out", "{run}/model.pt"],
        finding="2",
        prepare=run_files,
    )
    add("export/out-is-the-checkpoint", [*E, "--out", "{run}/checkpoint.pt"], prepare=run_files)
    add("export/out-is-the-config", [*E, "--out", "{run}/config.json"], prepare=run_files)
    add(
        "export/model-file-and-out-same",
        ["export", "{run}/model.pt", "--out", "{run}/model.pt"],
        finding="2",
        prepare=run_files,
    )
    add("export/out-is-a-folder", [*E, "--out", "{d}/adir"], prepare=both(run_files, mkdir("adir")))
    add("export/truncated-model", E, prepare=damaged("truncated"))
    add("export/model-without-arch", E, finding="5", prepare=craft_model(lambda r: r.pop("arch")))
    add(
        "export/model-arch-kwargs-width-8",
        E,
        finding="5",
        prepare=craft_model(lambda r: r.update(arch_kwargs={"width": 8})),
    )
    add("export/no-such-run", ["export", "{d}/nothing"])
    add(
        "export/default-out-symlink-to-user-file",
        E,
        expect="either",
        timeout=90,
        prepare=both(
            run_files,
            write_file("mine.txt", "my file\n"),
            lambda c: os.symlink(c.d / "mine.txt", c.d / "run" / "model.onnx"),
        ),
        check=lambda c, r: (
            [] if (c.d / "mine.txt").read_text() == "my file\n" else ["wrote through a symlink"]
        ),
    )

    # ---------------------------------------------------------------- serve (must fail at start)
    S = ["serve", "{run}", "--port", "{port}", "--log-level", "warning"]
    add("serve/hostile-model", S, finding="1", mode="serve", prepare=damaged("hostile"), timeout=40)
    add("serve/truncated-model", S, mode="serve", prepare=damaged("truncated"), timeout=40)
    add(
        "serve/model-without-mean",
        S,
        mode="serve",
        finding="5",
        prepare=craft_model(lambda r: r.pop("mean")),
        timeout=40,
    )
    for flag, value, finding in [
        ("--max-upload-mb", "nan", "5"),
        ("--max-megapixels", "inf", "5"),
        ("--log-level", "bogus", "5"),
        ("--device", "meta", "11"),
        ("--port", "70000", "listed"),
        ("--port", "-1", "own"),
        ("--max-files", "0", "own"),
        ("--max-upload-mb", "-1", "own"),
        ("--max-megapixels", "nan", "own"),
        ("--max-upload-mb", "inf", "own"),
        ("--host", "no-such-host.invalid", "own"),
        ("--device", "cuda:7", "own"),
    ]:
        argv = [a for a in S] + [flag, value]  # the later flag wins with argparse
        add(
            f"serve/{flag[2:]}={value}",
            argv,
            finding=finding,
            mode="serve",
            prepare=run_files,
            timeout=40,
            quick=(flag, value) == ("--max-upload-mb", "nan"),
        )
    add("serve/port-in-use", S, prepare=both(run_files, hold_port), timeout=40)  # the port answers: ours
    add(
        "serve/onnx-backend-without-onnx",
        [*S, "--backend", "onnx"],
        mode="serve",
        prepare=run_files,
        timeout=40,
    )

    # ---------------------------------------------------------------- run
    add(
        "run/out-is-user-folder",
        ["run", "--train-limit", "300", "--epochs", "1", "--out", "{mine}"],
        finding="3",
        prepare=lambda c: c.user_folder(),
        timeout=90,
    )
    add("run/epochs-zero", ["run", "--train-limit", "300", "--epochs", "0", "--out", "{d}/out"])
    add("run/epochs-negative", ["run", "--train-limit", "300", "--epochs", "-1", "--out", "{d}/out"])
    add("run/train-limit-negative", ["run", "--train-limit", "-1", "--epochs", "1", "--out", "{d}/out"])
    add("run/preset-bogus", ["run", "--preset", "bogus", "--out", "{d}/out"])
    add("run/dataset-bogus", ["run", "--dataset", "bogus", "--out", "{d}/out"])
    add(
        "run/device-meta",
        ["run", "--device", "meta", "--train-limit", "300", "--epochs", "1", "--out", "{d}/out"],
    )

    # ---------------------------------------------------------------- viz
    V = ["viz", "embed", "--n", "200", "--out", "{d}/maps"]
    add(
        "viz-embed/hostile-run",
        [*V, "--features", "cnn", "--run", "{d}/evil/model.pt"],
        finding="1",
        prepare=hostile_only,
        quick=True,
    )
    add(
        "viz-embed/truncated-run",
        [*V, "--features", "cnn", "--run", "{run}"],
        prepare=damaged("truncated"),
    )
    add("viz-embed/cnn-without-run", [*V, "--features", "cnn"])
    add("viz-embed/method-bogus", [*V, "--method", "bogus"])
    add("viz-embed/features-bogus", [*V, "--features", "bogus"])
    add("viz-embed/n-zero", ["viz", "embed", "--n", "0", "--out", "{d}/maps"])
    add("viz-embed/n-negative", ["viz", "embed", "--n", "-5", "--out", "{d}/maps"])
    add("viz-embed/seed-negative", [*V, "--seed", "-1"])
    add("viz-embed/threads-negative", [*V, "--threads", "-1"])
    add(
        "viz-embed/out-is-a-file",
        ["viz", "embed", "--n", "200", "--out", "{d}/f.txt"],
        prepare=write_file("f.txt", "my file\n"),
    )

    # ---------------------------------------------------------------- audit
    A = ["audit", "--limit", "200", "--folds", "2", "--epochs", "1", "--threads", "1", "--out", "{d}/audit"]
    add(
        "audit/hostile-run",
        [*A, "--run", "{d}/evil/model.pt"],
        finding="1",
        prepare=hostile_only,
        quick=True,
    )
    add("audit/truncated-run", [*A, "--run", "{run}"], prepare=damaged("truncated"))
    for flag, value in [
        ("--folds", "1"),
        ("--folds", "0"),
        ("--threshold", "nan"),
        ("--threshold", "-1"),
        ("--limit", "-5"),
        ("--epochs", "0"),
        ("--threads", "-1"),
        ("--seed", "-1"),
        ("--width", "0"),
        ("--dataset", "bogus"),
    ]:
        add(f"audit/{flag[2:]}={value}", [*A, flag, value], timeout=90)
    add(
        "audit/out-is-a-file",
        [*A[:-1], "{d}/f.txt", "--label-errors", "none"],
        prepare=write_file("f.txt", "my file\n"),
    )

    # ---------------------------------------------------------------- sweep
    W = ["sweep", "{d}/plan.toml", "--out", "{d}/sweep", "--workers", "1"]
    plan = lambda text: write_file("plan.toml", text)  # noqa: E731
    add("sweep/hostile-checkpoint-resumed", W, finding="1", prepare=sweep_resumable_evil, timeout=120)
    add(
        "sweep/hostile-model-ensembled",
        [*W, "--ensemble", "2"],
        finding="1",
        prepare=sweep_finished(),
        timeout=120,
    )
    add(
        "sweep/finished-run-evaluation-json-partial",
        [*W, "--ensemble", "2"],
        prepare=sweep_finished(evil=False, evaluation='{"accuracy": 0.5}'),
        timeout=120,
    )
    add("sweep/plan-missing", ["sweep", "{d}/nope.toml", "--out", "{d}/sweep"])
    add("sweep/plan-malformed", W, prepare=plan("[base\nlr = "))
    add("sweep/plan-unknown-table", W, prepare=plan("[base]\nepochs = 1\n[grids]\nseed = [0]\n"))
    add("sweep/grid-not-a-list", W, prepare=plan("[grid]\nseed = 3\n"))
    add("sweep/grid-lr-inf", W, prepare=plan("[base]\nepochs = 1\n[grid]\nlr = [0.1, inf]\n"))
    add("sweep/base-seed-negative", W, prepare=plan("[base]\nseed = -1\n[grid]\nlr = [0.1]\n"))
    add("sweep/workers-zero", [*W[:-1], "0"], prepare=lambda c: sweep_plan(c), timeout=90)
    add("sweep/threads-negative", [*W, "--threads", "-1"], prepare=lambda c: sweep_plan(c), timeout=90)
    add("sweep/ensemble-negative", [*W, "--ensemble", "-1"], prepare=lambda c: sweep_plan(c), timeout=90)
    add(
        "sweep/out-is-a-file",
        ["sweep", "{d}/plan.toml", "--out", "{d}/f.txt"],
        prepare=both(lambda c: sweep_plan(c), write_file("f.txt", "my file\n")),
        timeout=90,
    )

    # ---------------------------------------------------------------- bench
    res = ["--results", "{d}/r.jsonl"]
    add("bench-add/missing-file", ["bench", "add", "{d}/nope.json", *res])
    add(
        "bench-add/malformed-json",
        ["bench", "add", "{d}/rows.json", *res],
        prepare=write_file("rows.json", "{ nope"),
    )
    add(
        "bench-add/row-without-fields",
        ["bench", "add", "{d}/rows.json", *res],
        prepare=write_file("rows.json", '{"name": "x"}'),
    )
    add(
        "bench-add/accuracy-nan",
        ["bench", "add", "{d}/rows.json", *res],
        prepare=write_file("rows.json", '{"name": "x", "dataset": "fashion", "mean_accuracy": NaN}'),
    )
    add(
        "bench-add/accuracy-above-one",
        ["bench", "add", "{d}/rows.json", *res],
        prepare=write_file("rows.json", '{"name": "x", "dataset": "fashion", "mean_accuracy": 93}'),
    )
    add(
        "bench-add/results-is-user-file",
        ["bench", "add", "{d}/rows.json", "--results", "{d}/notes.txt"],
        prepare=both(
            write_file("rows.json", '{"name": "x", "dataset": "fashion", "mean_accuracy": 0.9}'),
            write_file("notes.txt", "my notes, not a results file\n"),
        ),
    )
    add(
        "bench-report/results-missing",
        ["bench", "report", "--results", "{d}/nope.jsonl", "--out", "{d}/d.html"],
    )
    add(
        "bench-report/results-binary",
        ["bench", "report", "--results", "{d}/r.jsonl", "--out", "{d}/d.html"],
        prepare=write_file("r.jsonl", os.urandom(2000)),
    )
    add(
        "bench-report/out-is-a-folder",
        ["bench", "report", "--results", "{d}/r.jsonl", "--out", "{d}/adir"],
        prepare=both(mkdir("adir"), results_row),
    )
    SK = ["bench", "sklearn", "--quick", "200", "--only", "LogisticRegression", *res]
    for flag, value in [
        ("--jobs", "0"),
        ("--memory-limit", "bogus"),
        ("--time-limit", "nan"),
        ("--repeats", "0"),
        ("--threads", "-1"),
        ("--only", "NoSuchFamily"),
        ("--quick", "-5"),
        ("--grid", "{d}/grid.json"),
    ]:
        add(
            f"bench-sklearn/{flag[2:]}={Path(value).name}",
            [*SK, flag, value],
            timeout=60,
            prepare=write_file("grid.json", "{ nope") if flag == "--grid" else None,
        )
    # --best / --additions pick their rows from the shipped grid files: with --grid, or --best narrowed to
    # a family Table 3 lacks, one line; an estimate from a file with no quick-pass rows, one line.
    add(
        "bench-sklearn/best-with-grid",
        ["bench", "sklearn", "--best", "--grid", "{d}/grid.json", *res],
        timeout=60,
        prepare=write_file("grid.json", '{"classifiers": {}}'),
    )
    add(
        "bench-sklearn/best-only-missing-family",
        ["bench", "sklearn", "--best", "--only", "GaussianProcessClassifier", "--dry-run", *res],
        timeout=60,
    )
    add("bench-estimate/results-missing", ["bench", "estimate", "--results", "{d}/nope.jsonl"], timeout=60)
    add(
        "bench-estimate/results-binary",
        ["bench", "estimate", "--results", "{d}/r.jsonl"],
        timeout=60,
        prepare=write_file("r.jsonl", os.urandom(2000)),
    )
    CN = [
        "bench",
        "cnn",
        "--epochs",
        "1",
        "--train-limit",
        "300",
        "--test-limit",
        "100",
        "--references",
        "",
        "--seeds",
        "0",
        "--out",
        "{d}/cnn",
    ]
    for flag, value in [
        ("--recipes", "bogus"),
        ("--seeds", "a,b"),
        ("--reference-resnet", "5xq"),
        ("--epochs", "0"),
        ("--train-limit", "-1"),
        ("--width", "-1"),
    ]:
        add(f"bench-cnn/{flag[2:]}={value}", [*CN, flag, value], timeout=60)
    for case in cases:
        if case.name.startswith("sweep/"):
            case.lock = (
                "dask"  # two LocalClusters at once fight over the dashboard port: not the input's fault
            )
    return cases


# ----------------------------------------------------------------------------------------------------
# Serving: HTTP probes against one running `fmnist serve` (must answer 4xx quickly, bounded memory)


@dataclasses.dataclass
class Probe:
    name: str
    finding: str
    do: Callable[[int, Path], list[tuple[int, str]]]  # (port, pictures) -> [(status, body)]
    expect: tuple[int, ...]  # acceptable statuses
    max_seconds: float = 10.0
    max_rss_growth_mb: float | None = None  # VmHWM growth of the server allowed by this probe
    json_detail: bool = True  # a 4xx must carry FastAPI's JSON {"detail": ...} (not for protocol errors)


def request(
    port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None, timeout: float = 60
) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def multipart(files: list[tuple[str, bytes]], field: str = "files") -> tuple[bytes, dict]:
    boundary = "badinputs" + os.urandom(8).hex()
    parts = []
    for name, data in files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def post_files(names: list[str], path: str = "/predict", field: str = "files") -> Callable[[int, Path], list]:
    def do(port: int, pics: Path) -> list[tuple[int, str]]:
        body, headers = multipart([(n, (pics / n).read_bytes()) for n in names], field)
        return [request(port, "POST", path, body, headers)]

    return do


def post_named(filename: str, source: str) -> Callable[[int, Path], list]:
    def do(port: int, pics: Path) -> list[tuple[int, str]]:
        body, headers = multipart([(filename, (pics / source).read_bytes())])
        return [request(port, "POST", "/predict", body, headers)]

    return do


def concurrent_posts(n: int, names: list[str]) -> Callable[[int, Path], list]:
    def do(port: int, pics: Path) -> list[tuple[int, str]]:
        single = post_files(names)
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            return [r for rs in pool.map(lambda _: single(port, pics), range(n)) for r in rs]

    return do


def raw_request(text: bytes) -> Callable[[int, Path], list]:
    def do(port: int, pics: Path) -> list[tuple[int, str]]:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.sendall(text)
            data = b""
            with contextlib.suppress(OSError):
                while chunk := s.recv(65536):
                    data += chunk
        head = data.split(b"\r\n", 1)[0].decode("latin-1")
        m = re.match(r"HTTP/\S+ (\d{3})", head)
        return [(int(m.group(1)) if m else 0, data.split(b"\r\n\r\n", 1)[-1].decode("utf-8", "replace"))]

    return do


def build_probes() -> list[Probe]:
    Pr = Probe
    simple = lambda method, path: lambda port, pics: [request(port, method, path)]  # noqa: E731
    return [
        Pr("head-page", "11", simple("HEAD", "/"), (200,)),
        Pr("head-health", "11", simple("HEAD", "/health"), (200,)),
        Pr("decompression-bomb", "4", post_files(["bomb.png"]), (413,), max_seconds=5, max_rss_growth_mb=300),
        Pr(
            "16-bombs-one-request",
            "4",
            post_files(["bomb.png"] * 16),
            (413,),
            max_seconds=10,
            max_rss_growth_mb=600,
        ),
        Pr(
            "8-concurrent-requests-of-16-bombs",
            "4",
            concurrent_posts(8, ["bomb.png"] * 16),
            (413,),
            max_seconds=30,
            max_rss_growth_mb=1024,
        ),
        Pr(
            "16-under-cap-pictures-one-request",
            "4",
            post_files(["under-cap.png"] * 16),
            (200, 413, 422),
            max_seconds=90,
            max_rss_growth_mb=1024,
        ),
        Pr(
            "8-concurrent-requests-of-2-under-cap",  # each request under the caps: all decoded at once
            "4",
            concurrent_posts(8, ["under-cap.png"] * 2),
            (200, 413, 422),
            max_seconds=90,
            max_rss_growth_mb=1536,
        ),
        Pr(
            "huge-header-png",
            "own",
            post_files(["huge-header.png"]),
            (413,),
            max_seconds=5,
            max_rss_growth_mb=300,
        ),
        Pr("zero-byte-file", "own", post_files(["empty.png"]), (415, 422)),
        Pr("text-named-png", "own", post_files(["text.png"]), (415,)),
        Pr("truncated-png", "own", post_files(["truncated.png"]), (415, 422)),
        Pr("17-files", "own", post_files(["shirt.png"] * 17), (413,)),
        Pr("wrong-field-name", "own", post_files(["shirt.png"], field="picture"), (422,)),
        Pr("top-k-text", "own", post_files(["shirt.png"], "/predict?top_k=abc"), (422,)),
        Pr("top-k-zero", "own", post_files(["shirt.png"], "/predict?top_k=0"), (422,)),
        Pr("top-k-huge", "own", post_files(["shirt.png"], "/predict?top_k=99999999999999999999"), (422,)),
        Pr("samples-n-negative", "own", simple("GET", "/samples?n=-1"), (422,)),
        Pr("samples-n-huge", "own", simple("GET", "/samples?n=1000000000"), (422,)),
        Pr("samples-seed-negative", "own", simple("GET", "/samples?seed=-5"), (422,)),
        Pr(
            "content-length-negative",
            "own",
            raw_request(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\nConnection: close\r\n\r\n"
            ),
            (400,),
            json_detail=False,
        ),
        Pr(
            "content-length-over-cap",
            "own",
            raw_request(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                b"Content-Length: 999999999999\r\nConnection: close\r\n\r\n"
            ),
            (413,),
        ),
        Pr("path-traversal", "own", simple("GET", "/static/../../../../etc/passwd"), (404,)),
        Pr("encoded-path-traversal", "own", simple("GET", "/static/..%2f..%2f..%2fetc%2fpasswd"), (404,)),
        Pr("unicode-long-filename", "own", post_named("é" * 3000 + ".png", "shirt.png"), (200, 400, 422)),
    ]


def vm_hwm_mb(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(m.group(1)) / 1024 if m else None


def reset_hwm(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def run_serve_probes(fx: Path, scratch: Path, base_env: dict, probes: list[Probe]) -> list[dict]:
    """Start one `fmnist serve` on a copy of the run; each probe becomes one record."""
    d = scratch / "cases" / "serve-http"
    d.mkdir(parents=True)
    shutil.copytree(fx / "run", d / "run")
    pics = fx / "images"
    port = free_port()
    err_path = d / "server.stderr"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [*fmnist_argv(), "serve", str(d / "run"), "--port", str(port), "--log-level", "warning"],
            cwd=d,
            env=base_env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    records = []
    try:
        started = wait_for_port(port, proc, 60)
        for pr in probes:
            rec = {
                "name": f"serve (HTTP)/{pr.name}",
                "command": "serve (HTTP)",
                "finding": pr.finding,
                "expect": "/".join(map(str, pr.expect)),
                "argv": pr.name,
                "problems": [],
            }
            if not started:
                rec["problems"].append("the server did not start")
                records.append(finish_http(rec))
                continue
            rec["peak_reset"] = reset_hwm(proc.pid)  # else the growth is over the earlier peak
            before = vm_hwm_mb(proc.pid)
            err_before = err_path.stat().st_size
            t0 = time.monotonic()
            try:
                answers = pr.do(port, pics)
            except Exception as exc:  # the connection died: the server crashed or hung
                answers = [(0, f"{type(exc).__name__}: {exc}")]
            rec["seconds"] = round(time.monotonic() - t0, 2)
            after = vm_hwm_mb(proc.pid)
            rec["statuses"] = sorted({s for s, _ in answers})
            rec["first_line"] = answers[0][1].strip().splitlines()[0][:300] if answers[0][1].strip() else ""
            if before is not None and after is not None:
                rec["rss_growth_mb"] = round(after - before, 1)
                rec["peak_rss_mb"] = round(after, 1)
            new_err = err_path.read_bytes()[err_before:].decode("utf-8", "replace")
            rec["traceback"] = bool(TRACEBACK.search(new_err))
            bad = [s for s, _ in answers if s not in pr.expect]
            if bad:
                rec["problems"].append(f"answered {sorted(set(bad))}, expected {rec['expect']}")
            unclear = [
                s
                for s, body in answers
                if 400 <= s < 500 and not (one_line_detail(body) if pr.json_detail else one_line_text(body))
            ]
            if unclear:
                rec["problems"].append(f"{unclear[0]} without a one-line 'detail'")
            rec["one_line"] = not bad and not unclear
            if rec["seconds"] > pr.max_seconds:
                rec["problems"].append(f"took {rec['seconds']} s (at most {pr.max_seconds})")
            if pr.max_rss_growth_mb is not None and rec.get("rss_growth_mb", 0) > pr.max_rss_growth_mb:
                rec["problems"].append(
                    f"server memory grew {rec['rss_growth_mb']:.0f} MB (at most {pr.max_rss_growth_mb:.0f})"
                )
            if rec["traceback"]:
                rec["problems"].append("traceback in the server's log")
            if proc.poll() is not None:
                rec["problems"].append(f"the server died (exit {proc.returncode})")
                started = False
            records.append(finish_http(rec))
    finally:
        stop(proc)
    return records


def one_line_text(body: str) -> bool:
    return len(visible_lines(body)) == 1


def one_line_detail(body: str) -> bool:
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        return False
    if isinstance(detail, str):
        return bool(detail.strip()) and "\n" not in detail.strip()
    return isinstance(detail, list) and bool(detail)  # FastAPI's validation list


def finish_http(rec: dict) -> dict:
    """An HTTP probe's record in the cases' shape ("one line": the expected status, a one-line detail)."""
    rec.setdefault("traceback", False)
    rec.setdefault("one_line", False)
    rec.update(code_ran=None, data_lost=[], temp_left=[], passed=not rec["problems"])
    return rec


# ----------------------------------------------------------------------------------------------------
# A mirror that misbehaves (finding 9)


class Mirror:
    """Loopback HTTP: /endless/NAME streams zeros forever, /wrong/NAME right size wrong bytes, /slow/NAME 1 B/s."""

    def __init__(self) -> None:
        self.sent: dict[str, list[int]] = {"endless": [], "wrong": [], "slow": []}
        self.server: ThreadingHTTPServer | None = None
        self.lock = threading.Lock()

    def max_sent(self, mode: str) -> int:
        with self.lock:
            return max(self.sent[mode], default=0)

    def start(self) -> str:
        mirror = self
        sizes = known_sizes()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                parts = self.path.strip("/").split("/")
                mode, name = parts[0], parts[-1]
                size = sizes.get(name, 30_000)
                sent = 0
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    if mode != "endless":
                        self.send_header("Content-Length", str(size))
                    self.end_headers()
                    if mode == "endless":
                        block = b"\x00" * 65536
                        while sent < 256 << 20:
                            self.wfile.write(block)
                            sent += len(block)
                    elif mode == "wrong":
                        self.wfile.write(os.urandom(size))
                        sent = size
                    else:
                        for _ in range(120):
                            self.wfile.write(b"\x1f")
                            self.wfile.flush()
                            sent += 1
                            time.sleep(1)
                except OSError:
                    pass
                finally:
                    with mirror.lock:
                        mirror.sent.setdefault(mode, []).append(sent)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


def known_sizes() -> dict[str, int]:
    try:
        sys.path.insert(0, str(REPO / "src"))
        from fmnist.data.registry import FASHION

        return {r.filename: r.size for r in FASHION.resources.values() if r.size}
    except Exception:  # the registry moved: the real files' sizes do as well
        return {f: (DATA_DIR / f).stat().st_size for f in DATA_FILES if (DATA_DIR / f).exists()}


MIRROR = Mirror()


# ----------------------------------------------------------------------------------------------------
# Running one case


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        if port_open(port):
            return True
        time.sleep(0.2)
    return False


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def snapshot(root: Path) -> dict[str, str]:
    """relative path -> sha1 of every file under root (symlinks by their target)."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath, f)
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
                continue
            h = hashlib.sha1()
            with open(p, "rb") as fh:
                while block := fh.read(1 << 20):
                    h.update(block)
            out[rel] = h.hexdigest()
    return out


def names(root: Path) -> set[str]:
    out = set()
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            out.add(str(Path(dirpath, n).relative_to(root)))
    return out


def temp_entries(root: Path, before: set[str]) -> list[str]:
    left = []
    for rel in sorted(names(root) - before):
        path = root / rel
        name = path.name
        if any(
            part.startswith(".") and (root / q).is_dir() and q not in before for q, part in parents_of(rel)
        ):
            continue  # inside a hidden folder already reported
        if TEMP_NAME.search(name) or (name.startswith(".") and path.is_dir()):
            left.append(rel)
    return left


def parents_of(rel: str) -> list[tuple[str, str]]:
    parts = Path(rel).parts[:-1]
    return [(str(Path(*parts[: i + 1])), parts[i]) for i in range(len(parts))]


def visible_lines(text: str) -> list[str]:
    """The non-blank lines a terminal would show: within a line, what follows the last ``\\r`` wins."""
    out = []
    for raw in text.split("\n"):
        segments = [s for s in raw.split("\r") if s]
        if segments and segments[-1].strip():
            out.append(segments[-1].strip())
    return out


LIMITER = (
    "import os, resource, sys\n"
    "fsize, vmem = int(sys.argv[1]), int(sys.argv[2])\n"
    "if fsize: resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))\n"
    "if vmem: resource.setrlimit(resource.RLIMIT_AS, (vmem, vmem))\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


def command_argv(case: Case, c: Ctx) -> list[str]:
    args = [a.format(**c.vars) for a in case.argv]
    base = fmnist_argv()
    if case.limits:
        base = [
            sys.executable,
            "-c",
            LIMITER,
            str(case.limits.get("fsize", 0)),
            str(case.limits.get("as", 0)),
            base[0],
            *base[1:],
        ]
    return base + args


def run_process(case: Case, c: Ctx, argv: list[str], env: dict) -> dict:
    """One subprocess: its exit, output and time; 'started serving' / signal handling per case mode."""
    t0 = time.monotonic()
    out_path, err_path = c.d.parent / (c.d.name + ".stdout"), c.d.parent / (c.d.name + ".stderr")
    notes: list[str] = []
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            argv,
            cwd=c.d,
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background shell ignores it
        )
        timed_out = False
        end = t0 + case.timeout
        signalled = False
        while proc.poll() is None and time.monotonic() < end:
            if case.mode == "serve" and port_open(int(c.vars["port"])):
                notes.append("started serving")
                break
            if (
                case.mode == "signal"
                and not signalled
                and case.signal_when
                and list(c.d.glob(case.signal_when))
            ):
                time.sleep(0.5)
                proc.send_signal(case.signum)
                signalled = True
                end = min(end, time.monotonic() + 30)
            time.sleep(0.05)
        if proc.poll() is None:
            if not notes:
                timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if case.mode == "signal" and not signalled and not timed_out:
            notes.append("finished before the signal could be sent")
    stdout = out_path.read_bytes().decode("utf-8", "replace")
    stderr = err_path.read_bytes().decode("utf-8", "replace")
    return {
        "exit": proc.returncode,
        "timed_out": timed_out,
        "seconds": round(time.monotonic() - t0, 2),
        "stdout": stdout,
        "stderr": stderr,
        "notes": notes,
    }


def judge(case: Case, p: dict) -> tuple[dict, list[str]]:
    """What one process answered, and what is wrong with that answer for this case."""
    shown = visible_lines(p["stderr"])
    lines = (
        [ln for ln in shown if not INFO_LINE.search(ln)]
        if shown and not INFO_LINE.search(shown[-1])
        else shown
    )
    clear = CLEAR_SIGNAL if case.mode == "signal" else CLEAR_ERROR
    one_line = len(lines) == 1 and bool(clear.search(lines[0])) and not UNCLEAR.search(lines[0])
    traceback = bool(TRACEBACK.search(p["stderr"]) or TRACEBACK.search(p["stdout"]))
    seen = {
        "exit": p["exit"],
        "timed_out": p["timed_out"],
        "seconds": p["seconds"],
        "stderr_lines": len(shown),
        "first_line": lines[0][:400] if lines else "",
        "one_line": one_line,
        "traceback": traceback,
    }
    problems = list(p["notes"])
    if p["timed_out"]:
        problems.append(f"still running after {case.timeout:.0f} s")
    refused = p["exit"] not in (0, None)
    if case.expect == "ok" or (case.expect == "either" and p["exit"] == 0):
        if p["exit"] != 0:
            problems.append(f"exit {p['exit']}, expected 0")
        if case.note and not re.search(case.note, p["stdout"] + p["stderr"]):
            problems.append(f"no note matching {case.note!r} in the output")
        seen["one_line"] = p["exit"] == 0 and not problems
    else:
        if not refused and not p["timed_out"]:
            problems.append("exit 0 (accepted)")
        if not one_line:
            why = (
                f"{len(lines)} lines"
                if len(lines) != 1
                else "internal error"
                if UNCLEAR.search(lines[0])
                else "not an `fmnist: error:` line"
            )
            problems.append(f"stderr is not one clear line ({why})")
        elif case.note and not re.search(case.note, lines[0]):
            problems.append(f"the line does not match {case.note!r}")
    if traceback:
        problems.append("traceback")
    return seen, problems


def run_case(case: Case, fx: Path, scratch: Path, base_env: dict) -> dict:
    """Prepare the case's folder, run it (``runs`` times), and record everything the promise covers."""
    d = scratch / "cases" / re.sub(r"[^\w.=-]+", "_", case.name)
    d.mkdir(parents=True)
    c = Ctx(d=d, fx=fx)
    c.vars.update(d=str(d), fx=str(fx), port=str(free_port()), mirror=MIRROR_URL.get("url", DEAD_MIRROR))
    c.vars.setdefault("run", str(d / "run"))
    c.vars.setdefault("data", str(d / "data"))
    c.vars.setdefault("mine", str(d / "mine"))
    rec: dict[str, Any] = {
        "name": case.name,
        "command": case.command,
        "finding": case.finding,
        "expect": case.expect,
        "quick": case.quick,
    }
    try:
        if case.prepare:
            case.prepare(c)
    except Exception as exc:  # the harness could not build the input: say so, do not count it as passed
        rec.update(
            problems=[f"harness: could not prepare ({type(exc).__name__}: {exc})"],
            passed=False,
            one_line=False,
            traceback=False,
            code_ran=None,
            data_lost=[],
            temp_left=[],
            argv=case.argv,
        )
        return rec
    env = dict(base_env)
    if case.own_cache:
        env["FMNIST_CACHE"] = str(d / "cache")
    for k, v in case.env.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    before = snapshot(d)
    before_names = names(d)
    argv = command_argv(case, c)
    shown = {k: v.replace(str(scratch), "$SCRATCH") for k, v in c.vars.items()}
    rec["argv"] = " ".join(["fmnist", *(a.format(**shown) for a in case.argv)])
    if case.limits:
        rec["limits"] = case.limits
    problems: list[str] = []
    lock = LOCKS.setdefault(case.lock, threading.Lock()) if case.lock else contextlib.nullcontext()
    try:
        with lock:
            for i in range(case.runs):
                p = run_process(case, c, argv, env)
                seen, probs = judge(case, p)
                if i == 0 or probs:
                    rec.update(seen)
                    rec["stderr_head"] = visible_lines(p["stderr"])[:4]
                c.info["_stdout"] = p["stdout"]
                problems += [f"run {i + 1}: {x}" if case.runs > 1 else x for x in probs]
    finally:
        for fn in c.cleanup:
            with contextlib.suppress(Exception):
                fn()
    after = snapshot(d)
    lost = [
        rel
        for rel, digest in before.items()
        if after.get(rel) != digest and not any(Path(rel).match(m) for m in c.mutable)
    ]
    rec["data_lost"] = lost
    if lost:
        problems.append(f"changed or removed: {', '.join(lost[:5])}")
    rec["temp_left"] = [
        t for t in temp_entries(d, before_names) if not any(re.search(a, t) for a in case.allow_left)
    ]
    if rec["temp_left"]:
        problems.append(f"temp left: {', '.join(rec['temp_left'][:5])}")
    rec["code_ran"] = any(m.exists() for m in c.markers) if c.markers else None
    if rec["code_ran"]:
        problems.append("the hostile pickle's command ran")
    if case.check:
        try:
            problems += case.check(c, rec)
        except Exception as exc:
            problems.append(f"harness: check failed ({type(exc).__name__}: {exc})")
    c.info.pop("_stdout", None)
    if c.info:
        rec["info"] = c.info
    rec["problems"] = problems
    rec["passed"] = not problems
    return rec


MIRROR_URL: dict[str, str] = {}
LOCKS: dict[str, threading.Lock] = {}


# ----------------------------------------------------------------------------------------------------
# Fixtures shared by the cases (built once)


def base_environment(scratch: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMNIST_")}
    env.update(
        FMNIST_CACHE=str(scratch / "cache"),
        FMNIST_DATA_DIR=str(DATA_DIR),
        FMNIST_MIRROR=DEAD_MIRROR,
        MPLBACKEND="Agg",
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),
    )
    env.pop("FMNIST_DEBUG", None)
    return env


def build_fixtures(scratch: Path, env: dict, need_other_arch: bool = True, warm: bool = True) -> Path:
    """A tiny trained run (and one of another architecture), and the pictures; warms the cache."""
    fx = scratch / "fixtures"
    fx.mkdir(parents=True)
    jobs = [[*fmnist_argv(), "train", *TINY, "--out", str(fx / "run")]]
    if need_other_arch:
        jobs.append(
            [*fmnist_argv(), "train", *TINY, "--model", "tutorial", "--out", str(fx / "run_tutorial")]
        )
    procs = [
        subprocess.Popen(j, cwd=fx, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for j in jobs
    ]
    pics = fx / "images"
    pics.mkdir()
    bomb_png(pics / "bomb.png")
    bomb_png(pics / "under-cap.png", 5000)  # 95 MiB decoded: under the 50-megapixel and 128 MiB caps
    huge_header_png(pics / "huge-header.png")
    shirt_png(pics / "shirt.png")
    (pics / "empty.png").write_bytes(b"")
    (pics / "text.png").write_text("this is a text file with a picture's name\n")
    (pics / "truncated.png").write_bytes((pics / "shirt.png").read_bytes()[:60])
    for j, p in zip(jobs, procs, strict=True):
        out, _ = p.communicate(timeout=300)
        if p.returncode != 0:
            raise SystemExit(
                f"bad_inputs: fixture failed: {' '.join(j)}\n{out.decode(errors='replace')[-2000:]}"
            )
    # the test split into the shared cache, so cases that evaluate do not race to write it
    if not warm:
        return fx
    shutil.copytree(fx / "run", scratch / "warm")
    subprocess.run(
        [*fmnist_argv(), "evaluate", str(scratch / "warm")],
        cwd=scratch,
        env=env,
        capture_output=True,
        timeout=300,
    )
    if (scratch / "warm" / "evaluation.json").exists():
        shutil.copy(scratch / "warm" / "evaluation.json", fx / "evaluation.json")
    return fx


# ----------------------------------------------------------------------------------------------------
# Report


def summarise(records: list[dict]) -> list[dict]:
    rows: dict[str, dict] = {}
    for r in records:
        row = rows.setdefault(
            r["command"],
            {
                "command": r["command"],
                "tried": 0,
                "one_line": 0,
                "traceback": 0,
                "code_ran": 0,
                "data_lost": 0,
                "temp_left": 0,
                "passed": 0,
            },
        )
        row["tried"] += 1
        row["one_line"] += bool(r.get("one_line"))
        row["traceback"] += bool(r.get("traceback"))
        row["code_ran"] += bool(r.get("code_ran"))
        row["data_lost"] += bool(r.get("data_lost"))
        row["temp_left"] += bool(r.get("temp_left"))
        row["passed"] += bool(r.get("passed"))
    total = {
        "command": "**all**",
        **{
            k: sum(r[k] for r in rows.values())
            for k in ("tried", "one_line", "traceback", "code_ran", "data_lost", "temp_left", "passed")
        },
    }
    return [*rows.values(), total]


def markdown(summary: list[dict], records: list[dict], meta: dict) -> str:
    lines = [
        "| command | tried | one line | traceback | code ran | data lost | temp left | all checks passed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary:
        lines.append(
            f"| {r['command']} | {r['tried']} | {r['one_line']} | {r['traceback']} | {r['code_ran']} | "
            f"{r['data_lost']} | {r['temp_left']} | {r['passed']} |"
        )
    failing = [r for r in records if not r.get("passed")]
    out = [
        f"Bad inputs: {meta['command']} ({meta['when']}, commit {meta['commit']}, {meta['seconds']:.0f} s, "
        f"{meta['machine']})",
        "",
        *lines,
        "",
        "Columns count cases. *one line*: refused with exactly one clear `fmnist: error: ...` line on stderr "
        "and a non-zero exit (the few inputs that are legitimately accepted, e.g. `--threads 999`: exit 0 "
        "with the expected note; `serve (HTTP)`: the expected 4xx status with a one-line JSON `detail`). "
        "*traceback*: a Python or Dask traceback was printed. *code ran*: a hostile pickle's "
        "`touch MARKER` ran. *data lost*: a file that was there before (the user's own files, the run, the "
        "input) changed or vanished. *temp left*: a temp file or hidden temp folder was left behind. "
        "*all checks passed*: none of these, and the case's own checks (timeouts, memory, quarantine "
        "count, folder modes) held.",
        "",
    ]
    if failing:
        out.append(f"Failing cases ({len(failing)}):")
        out.append("")
        for r in failing:
            first = r.get("first_line") or (r.get("statuses") and f"HTTP {r['statuses']}") or ""
            out.append(
                f"- `{r['name']}` (finding {r['finding']}): {'; '.join(r['problems'])}"
                + (f" — stderr: `{first}`" if first else "")
            )
    else:
        out.append("Every case passed.")
    return "\n".join(out) + "\n"


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        m = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        model = m.group(1).strip() if m else ""
    return f"{model or platform.processor()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return head + (" + uncommitted changes in src/" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ----------------------------------------------------------------------------------------------------


def select(cases: list[Case], only: str | None, quick: bool) -> list[Case]:
    if quick:
        cases = [c for c in cases if c.quick]
    if only:
        cases = [c for c in cases if re.search(only, c.name)]
    return cases


def run_all(
    cases: list[Case],
    probes: list[Probe],
    jobs: int,
    keep: bool = False,
    progress: Callable[[dict], None] | None = None,
) -> tuple[list[dict], dict]:
    """Build the fixtures in a scratch folder, run every case (``jobs`` at a time) and the HTTP probes."""
    t0 = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="fmnist-bad-inputs-"))
    mirror_needed = any("{mirror}" in " ".join(c.argv) for c in cases)
    try:
        env = base_environment(scratch)
        need_fixture_runs = bool(probes) or any(c.prepare for c in cases)
        fx = (
            build_fixtures(
                scratch,
                env,
                need_other_arch=any("other-arch" in c.name for c in cases),
                warm=not all(c.quick for c in cases),  # the quick cases never read the test split
            )
            if need_fixture_runs
            else scratch / "fixtures"
        )
        data_before = snapshot(DATA_DIR)
        if mirror_needed:
            MIRROR_URL["url"] = MIRROR.start()
        records: list[dict] = []
        with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
            futures = [pool.submit(run_serve_probes, fx, scratch, env, probes)] if probes else []
            # the long cases first, so the run does not end waiting on one of them
            for case in sorted(cases, key=lambda c: -c.timeout * c.runs):
                futures.append(pool.submit(run_case, case, fx, scratch, env))
            for fut in concurrent.futures.as_completed(futures):
                got = fut.result()
                for rec in got if isinstance(got, list) else [got]:
                    records.append(rec)
                    if progress:
                        progress(rec)
        order = {c.name: i for i, c in enumerate(cases)}
        records.sort(key=lambda r: (r["command"] == "serve (HTTP)", order.get(r["name"], 10**6), r["name"]))
        if snapshot(DATA_DIR) != data_before:
            records.append(
                {
                    "name": "global/system-data-copy",
                    "command": "global",
                    "finding": "own",
                    "expect": "unchanged",
                    "problems": [f"{DATA_DIR} changed"],
                    "passed": False,
                    "data_lost": [str(DATA_DIR)],
                    "temp_left": [],
                    "one_line": False,
                    "traceback": False,
                }
            )
        shared_temp = temp_entries(scratch / "cache", set()) if (scratch / "cache").exists() else []
        if shared_temp:
            records.append(
                {
                    "name": "global/shared-cache",
                    "command": "global",
                    "finding": "8",
                    "expect": "no temp files",
                    "problems": [f"temp left: {', '.join(shared_temp[:5])}"],
                    "passed": False,
                    "data_lost": [],
                    "temp_left": shared_temp,
                    "one_line": True,
                    "traceback": False,
                }
            )
        meta = {"seconds": round(time.monotonic() - t0, 1), "scratch": str(scratch) if keep else None}
        # the messages name files in the scratch folder: write those paths the same way in every run
        records = json.loads(json.dumps(records, default=str).replace(str(scratch), "$SCRATCH"))
        return records, meta
    finally:
        if mirror_needed:
            MIRROR.stop()
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", metavar="PATTERN", help="run only the cases whose name matches this regex")
    ap.add_argument("--quick", action="store_true", help="only the fast subset (the tests' cases)")
    ap.add_argument("--jobs", type=int, default=3, help="cases run at once (default: 3)")
    ap.add_argument("--no-http", action="store_true", help="skip the HTTP probes of a running server")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (its path is printed)")
    ap.add_argument("--list", action="store_true", help="list the cases and stop")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON results (default: benchmarks/results/bad_inputs.json for a full run; "
        "nothing is written for --only / --quick runs without --out)",
    )
    args = ap.parse_args(argv)
    cases = select(build_cases(), args.only, args.quick)
    probes = (
        []
        if args.no_http
        else [p for p in build_probes() if not args.only or re.search(args.only, f"serve (HTTP)/{p.name}")]
    )
    if args.quick and not args.only:
        probes = [p for p in probes if p.name in ("decompression-bomb", "head-health")]
    if args.list:
        for c in cases:
            print(f"{c.name:55s} finding {c.finding:6s} expect {c.expect}{'  (quick)' if c.quick else ''}")
        for p in probes:
            print(f"serve (HTTP)/{p.name:42s} finding {p.finding:6s} expect {p.expect}")
        return 0

    def progress(rec: dict) -> None:
        mark = "ok  " if rec.get("passed") else "FAIL"
        why = "" if rec.get("passed") else f"  {'; '.join(rec.get('problems', []))[:160]}"
        print(f"{mark} {rec['name']}{why}", file=sys.stderr, flush=True)

    records, meta = run_all(cases, probes, args.jobs, keep=args.keep, progress=progress)
    summary = summarise(records)
    command = "python benchmarks/bad_inputs.py" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:])
    )
    meta.update(
        command=command,
        when=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        commit=git_commit(),
        machine=machine(),
    )
    report = markdown(summary, records, meta)
    print(report)
    out = args.out or (None if (args.only or args.quick) else RESULTS / "bad_inputs.json")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        doc = {"meta": meta, "summary": summary, "cases": records}
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n")
        os.replace(tmp, out)
        md = out.with_suffix(".md")
        md.write_text(report)
        print(f"wrote {out} and {md}", file=sys.stderr)
    if meta.get("scratch"):
        print(f"scratch kept: {meta['scratch']}", file=sys.stderr)
    return 0 if all(r.get("passed") for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
