"""One baseline job in its own process: ``python -m fmnist.baselines.worker JOB.json PROGRESS.jsonl PARENT_PID``.

:func:`fmnist.baselines.job.run_limited` starts this process, which first puts itself under the
job's limits (:func:`apply_limits`: the kernel enforces them from then on) and never writes the
results file. It reports through PROGRESS.jsonl, one line per event, so whatever it finished
survives a kill:

- ``{"event": "start", "estimator": ..., "mapped": [...], "n_train": ..., ...}``
- ``{"event": "repeat", "score": 0.85, "fit_seconds": ..., "test_seconds": ...}`` per repeat
- ``{"event": "end", "status": "done" | "skipped" | "memory" | "error", "reason": ...}``

Each repeat trains on a new shuffle of the training set (pixels standardised by a scaler fitted on
that set) and scores the whole test set; after two repeats whose scores agree within 1e-3 the
classifier is taken as insensitive to the order and the rest are skipped, as in the original runner.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import os
import resource
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.baselines.estimators import CannotBuild, build_estimator, describe, sanity_check
from fmnist.data import load_dataset, stratified_split
from fmnist.errors import DataError, FmnistError

# scikit-learn is imported inside the functions that use it: the runner imports this module, and
# `fmnist --help` imports the runner (the core install has no scikit-learn); in the job, after its limits.
AGREE = 1e-3  # two scores this close: further shuffles would not change the result


def load_arrays(
    dataset: str, data_dir: str | None, data_npz: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """``(x_train, y_train, x_test, y_test, fingerprint)`` from a verified data set or an exported NPZ.

    The NPZ is the one ``fmnist data export --format npz`` writes (Keras' ``x_train``, ``y_train``,
    ``x_test``, ``y_test``; older exports' ``x_t10k``, ``y_t10k`` too); its fingerprint is a hash of the file.
    """
    if data_npz is None:
        ds = load_dataset(dataset, data_dir)
        return ds.train.images, ds.train.labels, ds.test.images, ds.test.labels, ds.fingerprint
    path = Path(data_npz)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        with np.load(path) as npz:
            test = "test" if "x_test" in npz.files else "t10k"  # Keras' names; older exports said t10k
            arrays = [npz[k] for k in ("x_train", "y_train", f"x_{test}", f"y_{test}")]
    except FileNotFoundError:
        raise DataError(f"{path}: not found") from None
    except KeyError as exc:
        raise DataError(f"{path}: missing array {exc}; expected x_train, y_train, x_test, y_test") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not an NPZ file ({exc})") from None
    x_train, y_train, x_test, y_test = arrays
    for x, y, kind in ((x_train, y_train, "train"), (x_test, y_test, "t10k")):
        if x.ndim < 2 or len(x) != len(y) or y.ndim != 1:
            raise DataError(f"{path}: x_{kind} {x.shape} and y_{kind} {y.shape} do not pair up")
    return x_train, y_train, x_test, y_test, digest


def subsample_indices(labels: np.ndarray, subsample: int | None, seed: int) -> np.ndarray:
    """Indices of the training images used: all, or a seeded stratified subsample of ``subsample``."""
    if subsample is None or subsample >= len(labels):
        return np.arange(len(labels))
    _, picked = stratified_split(np.asarray(labels), int(subsample), seed=seed)
    return picked


def prepare(job: dict) -> dict[str, Any]:
    """Load, subsample, flatten and standardise (scaler fitted on the training images used)."""
    from sklearn.preprocessing import StandardScaler

    x_train, y_train, x_test, y_test, fingerprint = load_arrays(
        job["dataset"], job.get("data_dir"), job.get("data_npz")
    )
    idx = subsample_indices(y_train, job.get("subsample"), job.get("seed", 0))
    x_train = np.asarray(x_train)[idx].reshape(len(idx), -1).astype(np.float64)
    y_train = np.asarray(y_train)[idx].astype(np.int64)
    x_test = np.asarray(x_test).reshape(len(x_test), -1).astype(np.float64)
    y_test = np.asarray(y_test).astype(np.int64)
    scaler = StandardScaler().fit(x_train)
    return {
        "x_train": scaler.transform(x_train),
        "y_train": y_train,
        "x_test": scaler.transform(x_test),
        "y_test": y_test,
        "fingerprint": fingerprint,
    }


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to kill this process when the thread that started it dies, so a killed run leaves no orphans."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if parent_pid and os.getppid() != parent_pid:
        os._exit(1)  # the runner is already gone


def apply_limits(time_limit: float, memory_limit_mb: float) -> None:
    """Put this process under the job's limits; the kernel enforces them from here on.

    ``RLIMIT_CPU`` counts this process's CPU seconds since it started (start-up included): SIGXCPU
    ends it at the limit, SIGKILL a second later should anything catch that. ``RLIMIT_DATA`` bounds
    its heap and private mappings: an allocation past it fails, which Python raises as MemoryError.
    Both limits are hard, so the job cannot raise them (unless it runs as root). No core files.
    """

    def lower(which: int, soft: int, hard: int) -> None:
        _, current = resource.getrlimit(which)
        if current != resource.RLIM_INFINITY:
            soft, hard = min(soft, current), min(hard, current)
        resource.setrlimit(which, (soft, hard))

    cpu = math.ceil(time_limit)
    lower(resource.RLIMIT_CPU, cpu, cpu + 1)
    lower(resource.RLIMIT_DATA, int(memory_limit_mb * 2**20), int(memory_limit_mb * 2**20))
    lower(resource.RLIMIT_CORE, 0, 0)


def _warnings_seen(caught: list) -> list[str]:
    seen = dict.fromkeys(f"{w.category.__name__}: {str(w.message).splitlines()[0][:160]}" for w in caught)
    return list(seen)[:3]


def run_job(job: dict, emit) -> None:
    """Build, sanity-check and score the job's estimator; ``emit(dict)`` reports each event."""
    from sklearn.base import clone

    data = prepare(job)
    start = {
        "event": "start",
        "n_train": len(data["y_train"]),
        "n_test": len(data["y_test"]),
        "fingerprint": data["fingerprint"],
    }
    try:
        built = build_estimator(job["name"], job["parameters"])
    except CannotBuild as exc:
        emit(start)
        emit({"event": "end", "status": "skipped", "reason": f"cannot be built: {exc}"})
        return
    emit({**start, "estimator": describe(built.estimator), "mapped": list(built.mapped)})
    problem = sanity_check(built.estimator, data["x_train"], data["y_train"])
    if problem:
        emit({"event": "end", "status": "skipped", "reason": f"cannot be built: {problem}"})
        return
    scores: list[float] = []
    caught: list = []
    n = len(data["y_train"])
    for repeat in range(job.get("repeats", 1)):
        order = np.random.default_rng([job.get("seed", 0), repeat]).permutation(n)
        np.random.seed(repeat)  # estimators left with random_state=None draw from here: reproducible
        estimator = clone(built.estimator)
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            t0, c0 = time.perf_counter(), time.process_time()
            estimator.fit(data["x_train"][order], data["y_train"][order])
            t1, c1 = time.perf_counter(), time.process_time()
            score = float(estimator.score(data["x_test"], data["y_test"]))
            t2, c2 = time.perf_counter(), time.process_time()
        caught.extend(got)
        scores.append(score)
        emit(
            {
                "event": "repeat",
                "repeat": repeat,
                "score": score,
                "fit_seconds": t1 - t0,
                "fit_cpu_seconds": c1 - c0,
                "test_seconds": t2 - t1,
                "test_cpu_seconds": c2 - c1,
            }
        )
        del estimator
        if len(scores) == 2 and abs(scores[0] - scores[1]) < AGREE:
            break  # deterministic with respect to the shuffle
    emit({"event": "end", "status": "done", "reason": "", "warnings": _warnings_seen(caught)})


def own_peak_rss_mb() -> float | None:
    """This process's peak resident memory since its exec (VmHWM), MiB.

    The parent's ``wait4`` figure is no use here: Linux carries the peak of the memory the child was
    forked with (the parent's, hundreds of MB under a test runner) across exec into ``ru_maxrss``.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def main(argv: list[str]) -> int:
    job_path, progress_path, parent_pid = argv[0], argv[1], int(argv[2]) if len(argv) > 2 else 0
    _die_with_parent(parent_pid)
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    apply_limits(job["time_limit"], job["memory_limit_mb"])

    def emit(event: dict) -> None:
        event = {**event, "peak_rss_mb": own_peak_rss_mb()}
        with open(progress_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(event) + "\n")
            fh.flush()

    try:
        run_job(job, emit)
        return 0
    except MemoryError as exc:
        end = {"event": "end", "status": "memory", "reason": f"MemoryError: {exc}"[:300]}
    except Exception as exc:  # the job failed, not the runner: record it and let the run go on
        reason = (
            str(exc) if isinstance(exc, FmnistError) else " ".join(f"{type(exc).__name__}: {exc}".split())
        )
        end = {"event": "end", "status": "error", "reason": reason[:300]}
    emit(end)  # out of the except block: the traceback, and the memory the failed fit held, are freed
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
