"""One benchmark job in a child process under CPU-time, wall-time and memory limits.

The supervisor (a thread of the runner, or a Dask worker) starts :mod:`fmnist.bench.worker`, polls
its process tree's CPU seconds, wall time and resident memory every ``POLL_SECONDS`` and kills it
at any limit, so a runaway configuration costs at most its limits and the run goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmnist.bench.results import now_iso
from fmnist.errors import ConfigError

POLL_SECONDS = 0.1  # how often a supervisor samples its child's time and memory
_STOP = threading.Event()  # set when the run is interrupted: supervisors kill their children


@dataclass(frozen=True)
class Job:
    """One configuration to run: what a supervisor (thread or Dask worker) needs, and nothing more."""

    key: str
    name: str
    parameters: dict[str, Any]
    dataset: str
    data_dir: str | None
    data_npz: str | None
    subsample: int | None
    seed: int
    repeats: int
    time_limit: float  # CPU seconds
    wall_limit: float  # wall seconds
    memory_limit_mb: float
    threads: int
    scratch: str | None = None  # folder for the job's files (a run's own, cleared on restart); None: /tmp


def default_memory_limit_mb(jobs: int) -> float:
    """90% of the machine's memory shared among the jobs that run at once."""
    try:
        import psutil

        total = psutil.virtual_memory().total
    except ImportError:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return round(0.9 * total / 2**20 / max(1, jobs))


def parse_memory(text: str) -> float:
    """``"8G"``, ``"500M"`` or a plain number of MiB -> MiB."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([gGmM]i?[bB]?)?\s*", str(text))
    if not match:
        raise ConfigError(f"bad memory size {text!r}; write e.g. 8G or 500M")
    value, unit = float(match.group(1)), (match.group(2) or "m")[0].lower()
    return value * 1024 if unit == "g" else value


# --------------------------------------------------------------------------- supervising one job


def _tree(proc) -> list:
    import psutil

    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return [proc]


def _rss_mb(procs: list) -> float:
    import psutil

    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total / 2**20


def _cpu_seconds(proc, procs: list) -> float:
    """User + system seconds of the job's live processes and of the children it has already reaped."""
    import psutil

    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system + (t.children_user + t.children_system if p is proc else 0.0)
    return total


def _kill(procs: list) -> None:
    import psutil

    for p in reversed(procs):
        with contextlib.suppress(psutil.Error):
            p.kill()


def _child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
        env[var] = str(threads)
    src = str(Path(__file__).resolve().parents[2])  # so the child finds fmnist even when not installed
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def _read_events(path: Path) -> list[dict]:
    events = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                events.append(json.loads(line))
    return events


def run_guarded(job: Job) -> dict | None:
    """Run one job in a child process under its time and memory limits; the result row (None if interrupted)."""
    import psutil

    started, t0 = now_iso(), time.monotonic()
    peak, cpu, killed = 0.0, 0.0, None
    scratch = job.scratch if job.scratch and os.path.isdir(job.scratch) else None
    with tempfile.TemporaryDirectory(prefix="fmnist-bench-", dir=scratch) as tmp:
        job_file, progress, log = Path(tmp, "job.json"), Path(tmp, "progress.jsonl"), Path(tmp, "stderr.txt")
        job_file.write_text(json.dumps(dataclasses.asdict(job)), encoding="utf-8")
        with open(log, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "fmnist.bench.worker", str(job_file), str(progress), str(os.getpid())],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                env=_child_env(job.threads),
            )
        watched = psutil.Process(proc.pid)
        try:
            while proc.poll() is None:
                procs = _tree(watched)
                peak = max(peak, _rss_mb(procs))
                cpu = max(cpu, _cpu_seconds(watched, procs))
                if _STOP.is_set():
                    killed = "interrupted"
                elif cpu > job.time_limit:
                    killed = "timeout"
                elif time.monotonic() - t0 > job.wall_limit:
                    killed = "wall"
                elif peak > job.memory_limit_mb:
                    killed = "memory"
                if killed:
                    _kill(_tree(watched))
                    break
                time.sleep(POLL_SECONDS)
        finally:
            if proc.poll() is None:
                _kill(_tree(watched))
            proc.wait(timeout=30)
        seconds = time.monotonic() - t0
        events = _read_events(progress)
        stderr_tail = [
            line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()
        ]
    if killed == "interrupted":
        return None
    return _row(job, events, killed, proc.returncode, stderr_tail, started, seconds, peak, cpu)


def _row(
    job: Job,
    events: list[dict],
    killed: str | None,
    returncode: int,
    stderr: list[str],
    started: str,
    seconds: float,
    peak_mb: float,
    cpu_seconds: float = 0.0,
) -> dict:
    start = next((e for e in events if e.get("event") == "start"), {})
    end = next((e for e in events if e.get("event") == "end"), None)
    repeats = [e for e in events if e.get("event") == "repeat"]
    scores = [e["score"] for e in repeats]
    if killed == "timeout":
        status, reason = "timeout", f"killed at the CPU-time limit of {job.time_limit:g} s"
    elif killed == "wall":
        status, reason = "timeout", f"killed at the wall-time limit of {job.wall_limit:g} s"
    elif killed == "memory":
        status, reason = (
            "memory",
            f"killed at {peak_mb:.0f} MiB resident, over the limit of {job.memory_limit_mb:g} MiB",
        )
    elif end is not None:
        status, reason = end["status"], end.get("reason", "")
    elif returncode == -9:
        status, reason = (
            "memory",
            "killed by SIGKILL from outside, most likely the kernel's out-of-memory killer",
        )
    else:
        last = stderr[-1] if stderr else "no message"
        status, reason = "error", f"worker exited with status {returncode}: {last}"[:300]
    if status in ("timeout", "memory") and scores:
        # The repeats that finished are valid measurements: keep them, say why the rest are missing.
        reason = f"stopped after {len(scores)} of {job.repeats} repeats: {reason}"
        status = "done"
    mean = sum(scores) / len(scores) if scores else None
    std = (sum((s - mean) ** 2 for s in scores) / len(scores)) ** 0.5 if scores else None
    fit = [e["fit_seconds"] for e in repeats]
    fit_cpu = [e.get("fit_cpu_seconds", 0.0) for e in repeats]
    test = [e["test_seconds"] for e in repeats]
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
        "warnings": (end or {}).get("warnings", []),
        "scores": scores,
        "mean_accuracy": mean,
        "std_accuracy": std,
        "repeats": len(scores),
        "start_time": started,
        "done_time": now_iso(),
        "time_per_repeat": (sum(fit) + sum(test)) / len(scores) if scores else None,
        "train_seconds": sum(fit) / len(fit) if fit else None,
        "train_cpu_seconds": sum(fit_cpu) / len(fit_cpu) if fit_cpu else None,
        "wall_seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "peak_rss_mb": round(peak_mb, 1),
        "time_limit_s": job.time_limit,
        "wall_limit_s": job.wall_limit,
        "memory_limit_mb": job.memory_limit_mb,
        "threads": job.threads,
        "sklearn": _sklearn_version(),
        "host": socket.gethostname(),
    }


def _sklearn_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scikit-learn")
    except PackageNotFoundError:
        return None
