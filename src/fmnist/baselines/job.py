"""One baseline job in a child process, under limits the operating system enforces.

The child (:mod:`fmnist.baselines.worker`) limits itself first thing with ``setrlimit``: its data
memory (``RLIMIT_DATA``: heap and private mappings, so an allocation past the limit raises
MemoryError) and its CPU time (``RLIMIT_CPU``: SIGXCPU at the limit, SIGKILL a second later).
This side starts it, waits for it with ``os.wait4`` (which also returns its CPU seconds and peak
resident memory) under a wall-clock timer that kills jobs that wait instead of computing, and
turns how it ended into a result row. Nothing polls: the kernel enforces, the exit status tells.
The same function runs in a thread here or on a Dask worker.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmnist.baselines.results import now_iso
from fmnist.errors import ConfigError
from fmnist.fsio import read_jsonl
from fmnist.machine import machine_line

# The kernel checks RLIMIT_CPU against CPU time sampled at each clock tick; wait4 reports the
# scheduler's exact time, which on a virtual machine can be a few percent lower at the kill.
CPU_SEEN = 0.9
_LOCK = threading.Lock()  # guards _STOP and _LIVE: a job is killed only while it is not yet reaped
_STOP = threading.Event()  # the run was interrupted: kill what runs, start nothing more
_LIVE: set[int] = set()  # pids of the running (unreaped) job processes of this process


@dataclass(frozen=True)
class Job:
    """One configuration to run: what the parent (thread or Dask worker) and the child need, nothing more."""

    key: str
    name: str
    parameters: dict[str, Any]
    dataset: str
    data_dir: str | None
    data_npz: str | None
    subsample: int | None
    seed: int
    repeats: int
    time_limit: float  # CPU seconds of the job's process, start-up included (RLIMIT_CPU)
    wall_limit: float  # wall seconds (a timer here)
    memory_limit_mb: float  # MiB of data memory of the job's process (RLIMIT_DATA)
    threads: int
    scratch: str | None = None  # folder for the job's files (a run's own, cleared on restart); None: /tmp
    addition: bool = False  # a row of additions.json (today's scikit-learn), marked so in its result row


def default_memory_limit_mb(jobs: int) -> float:
    """90% of the machine's memory shared among the jobs that run at once."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return round(0.9 * total / 2**20 / max(1, jobs))


def parse_memory(text: str) -> float:
    """``"8G"``, ``"500M"`` or a plain number of MiB -> MiB."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([gGmM]i?[bB]?)?\s*", str(text))
    if not match:
        raise ConfigError(f"bad memory size {text!r}; write e.g. 8G or 500M")
    value, unit = float(match.group(1)), (match.group(2) or "m")[0].lower()
    return value * 1024 if unit == "g" else value


# --------------------------------------------------------------------------- running one job


def stop_jobs() -> None:
    """The run was interrupted: kill every running job; jobs not started yet return None at once."""
    with _LOCK:
        _STOP.set()
        for pid in _LIVE:
            os.kill(pid, signal.SIGKILL)


def reset_jobs() -> None:
    """A new run starts (in this process): jobs may start again."""
    _STOP.clear()


def _kill_if_running(pid: int) -> None:
    with _LOCK:
        if pid in _LIVE:  # not yet reaped, so the pid is still the job's
            os.kill(pid, signal.SIGKILL)


def _child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
        env[var] = str(threads)
    src = str(Path(__file__).resolve().parents[2])  # so the child finds fmnist even when not installed
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def run_limited(job: Job) -> dict | None:
    """Run one job in a child process under its limits; the result row (None if the run was interrupted)."""
    started, t0 = now_iso(), time.monotonic()
    scratch = job.scratch if job.scratch and os.path.isdir(job.scratch) else None
    with tempfile.TemporaryDirectory(prefix="fmnist-bench-", dir=scratch) as tmp:
        job_file, progress, log = Path(tmp, "job.json"), Path(tmp, "progress.jsonl"), Path(tmp, "stderr.txt")
        job_file.write_text(json.dumps(dataclasses.asdict(job)), encoding="utf-8")
        command = ["-m", "fmnist.baselines.worker", str(job_file), str(progress), str(os.getpid())]
        with _LOCK:
            if _STOP.is_set():
                return None
            with open(log, "wb") as err:
                proc = subprocess.Popen(
                    [sys.executable, *command],
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=err,
                    env=_child_env(job.threads),
                )
            _LIVE.add(proc.pid)
        walled, usage = _wait(proc, job.wall_limit)
        if _STOP.is_set():
            return None
        events = read_jsonl(progress)
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        last = next((line for line in reversed(lines) if line.strip()), "no message")
    cpu = usage.ru_utime + usage.ru_stime
    status, reason = outcome(job, events, walled, proc.returncode, last, cpu)
    # The worker's own VmHWM when it reported one (ru_maxrss also counts the parent it was forked from);
    # a job killed before its first report falls back to ru_maxrss (KiB on Linux), an upper bound.
    peaks = [e["peak_rss_mb"] for e in events if e.get("peak_rss_mb") is not None]
    peak_mb = max(peaks) if peaks else usage.ru_maxrss / 1024
    return result_row(
        job,
        events,
        status,
        reason,
        started=started,
        seconds=time.monotonic() - t0,
        peak_mb=peak_mb,
        cpu_seconds=cpu,
    )


def _wait(proc: subprocess.Popen, wall_limit: float) -> tuple[bool, resource.struct_rusage]:
    """Wait for the job's end, killing it at the wall limit; ``(killed at the wall limit, its rusage)``."""
    walled = threading.Event()
    timer = threading.Timer(wall_limit, lambda: (walled.set(), _kill_if_running(proc.pid)))
    timer.start()
    ended = False
    try:
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # it ended, and is not reaped yet
        ended = True
    finally:
        timer.cancel()
        with _LOCK:
            _LIVE.discard(proc.pid)
            if not ended or _STOP.is_set():
                os.kill(proc.pid, signal.SIGKILL)  # interrupted (harmless if it already ended)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    return walled.is_set(), usage


def outcome(
    job: Job, events: list[dict], walled: bool, returncode: int, last: str, cpu: float
) -> tuple[str, str]:
    """``(status, reason)`` of an ended job: the limit that struck, else what the child reported.

    ``last`` is the last line the child wrote on stderr, ``cpu`` its CPU seconds.
    """
    end = next((e for e in events if e.get("event") == "end"), None)
    if walled:
        status, reason = "timeout", f"killed at the wall-time limit of {job.wall_limit:g} s"
    elif returncode == -signal.SIGXCPU or (
        returncode == -signal.SIGKILL and cpu >= CPU_SEEN * job.time_limit
    ):
        status, reason = "timeout", f"killed at the CPU-time limit of {job.time_limit:g} s"
    elif end is not None:
        status, reason = end["status"], end.get("reason", "")
    elif returncode == -signal.SIGKILL:
        status, reason = (
            "memory",
            "killed by SIGKILL from outside, most likely the kernel's out-of-memory killer",
        )
    elif "MemoryError" in last:  # so short of memory that it could not even report it
        status, reason = "memory", last[:300]
    else:
        status, reason = "error", f"worker exited with status {returncode}: {last}"[:300]
    finished = sum(1 for e in events if e.get("event") == "repeat")
    if status in ("timeout", "memory") and finished:
        # The repeats that finished are valid measurements: keep them, say why the rest are missing.
        return "done", f"stopped after {finished} of {job.repeats} repeats: {reason}"
    return status, reason


def result_row(
    job: Job,
    events: list[dict],
    status: str,
    reason: str,
    *,
    started: str,
    seconds: float,
    peak_mb: float,
    cpu_seconds: float,
) -> dict:
    """The results file's row for a job (the fields are listed in :mod:`fmnist.baselines.results`)."""
    start = next((e for e in events if e.get("event") == "start"), {})
    end = next((e for e in events if e.get("event") == "end"), {})
    repeats = [e for e in events if e.get("event") == "repeat"]
    scores = [e["score"] for e in repeats]
    mean = sum(scores) / len(scores) if scores else None
    std = (sum((s - mean) ** 2 for s in scores) / len(scores)) ** 0.5 if scores else None

    def per_repeat(field: str) -> float | None:
        return sum(e.get(field, 0.0) for e in repeats) / len(repeats) if repeats else None

    fit, test = per_repeat("fit_seconds"), per_repeat("test_seconds")
    tested_cpu = [e["test_cpu_seconds"] for e in repeats if "test_cpu_seconds" in e]
    return {
        "key": job.key,
        "source": "sklearn",
        "family": job.name.rsplit(":", 1)[-1],
        "name": job.name,
        "parameters": job.parameters,
        "estimator": start.get("estimator"),
        "mapped": start.get("mapped", []),
        "dataset": job.dataset,
        "fingerprint": start.get("fingerprint"),
        "quick": job.subsample is not None,
        "subsample": job.subsample,
        "n_train": start.get("n_train"),
        "n_test": start.get("n_test"),
        "status": status,
        "reason": reason,
        "warnings": end.get("warnings", []),
        "scores": scores,
        "mean_accuracy": mean,
        "std_accuracy": std,
        "repeats": len(scores),
        "start_time": started,
        "done_time": now_iso(),
        "time_per_repeat": fit + test if repeats else None,
        "train_seconds": fit,
        "train_cpu_seconds": per_repeat("fit_cpu_seconds"),
        "test_cpu_seconds": sum(tested_cpu) / len(tested_cpu) if tested_cpu else None,
        "wall_seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "peak_rss_mb": round(peak_mb, 1),
        "time_limit_s": job.time_limit,
        "wall_limit_s": job.wall_limit,
        "memory_limit_mb": job.memory_limit_mb,
        "threads": job.threads,
        "sklearn": _sklearn_version(),
        "host": socket.gethostname(),
        "machine": machine_line(),  # where it ran: a Dask worker describes its own CPU
        "addition": job.addition,
    }


def _sklearn_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version  # here: 4 ms that `fmnist --help` skips

    try:
        return version("scikit-learn")
    except PackageNotFoundError:
        return None
