"""``fmnist bench sklearn``: the README's scikit-learn baselines, under limits, resumable and parallel.

Each job (one configuration on one data set) runs in its own child process under operating-system
limits (:mod:`fmnist.baselines.job`), so a runaway configuration costs at most its limits and the
run goes on. Only this process writes the results file, one fsync'd line per finished job; a
restarted run skips every key already there.

Parallelism: ``--jobs N`` runs N jobs at once from a pool of threads here (each thread only starts
and waits for its child; a thread dies with this process, and the kernel then kills its child);
``--scheduler local`` runs them from a Dask LocalCluster's threads, ``--scheduler tcp://HOST:PORT``
on a Dask cluster whose workers have ``fmnist[bench]`` installed and the data at hand. The limits
are the child's own wherever it runs, so a remote worker enforces them too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist import dask_client
from fmnist.baselines import grid as gridmod
from fmnist.baselines.estimators import ESTIMATORS, memory_estimate
from fmnist.baselines.job import Job, reset_jobs, result_row, run_limited, stop_jobs
from fmnist.baselines.results import (
    STATUSES,
    append_result,
    job_key,
    latest,
    now_iso,
    read_results,
    repair_tail,
)
from fmnist.baselines.worker import load_arrays, subsample_indices
from fmnist.errors import ConfigError, FmnistError
from fmnist.fsio import write_json

# The time limit counts CPU seconds, so a job's fate does not depend on what else the (shared)
# machine is doing; the wall limit, this many times longer by default, catches jobs that wait
# instead of computing (a deadlock, swapping, a sleep).
WALL_FACTOR = 5.0
# A --quick pass: 200 images per class, two repeats, a CPU minute per job at most. Measured on the
# 2-vCPU development machine: 28 CPU minutes for the 143 configurations (about 15 min of wall time
# on two idle cores; 54 min at nice 19 beside other work). See benchmarks/RESULTS.md.
DEFAULT_QUICK = 2000  # training images
QUICK_REPEATS = 2
QUICK_TIME_LIMIT = 60.0  # CPU seconds per job


@dataclass(frozen=True)
class SklearnBenchConfig:
    """Everything one run of the scikit-learn benchmark depends on; printed first, saved beside the results."""

    results: str = "benchmarks/results/sklearn.jsonl"  # JSONL file: appended, and read to resume
    dataset: str = "fashion"  # "fashion" or "mnist"; or the NPZ's name when data_npz is set
    data_dir: str | None = None  # folder with the four IDX files (default: cache / system copy)
    data_npz: str | None = None  # an `fmnist data export --format npz` file used instead
    quick: int | None = None  # training images in the stratified subsample; None: all 60,000
    repeats: int = 3  # shuffles of the training set per configuration (2 when the first two agree)
    seed: int = 0  # seeds the subsample and the shuffles
    jobs: int = 1  # configurations run at once
    threads: int = 1  # BLAS / OpenMP threads inside each job
    time_limit: float = 3600.0  # CPU seconds per job process, start-up included (RLIMIT_CPU)
    wall_limit: float | None = None  # wall seconds per job; None: WALL_FACTOR x time_limit
    memory_limit_mb: float = 8192.0  # MiB of data memory per job process (RLIMIT_DATA)
    scheduler: str | None = None  # None: threads here; "local": Dask LocalCluster; "tcp://host:port"
    grid: str | None = None  # grid JSON (default: the README's baselines.json, shipped)
    only: tuple[str, ...] = ()  # families to run (default: all)
    best: bool = False  # only the 13 family-best configurations of the paper's Table 3 (published.py)
    additions: bool = False  # the rows of additions.json (today's scikit-learn); with best: both sets
    retry: tuple[str, ...] = ()  # statuses whose jobs are run again (e.g. "timeout")

    def validate(self) -> None:
        if self.repeats < 1 or self.jobs < 1 or self.threads < 1:
            raise ConfigError("--repeats, --jobs and --threads must be at least 1")
        if (
            self.time_limit <= 0
            or self.memory_limit_mb <= 0
            or (self.wall_limit is not None and self.wall_limit <= 0)
        ):
            raise ConfigError("--time-limit, --wall-limit and --memory-limit must be positive")
        if self.quick is not None and self.quick < 20:
            raise ConfigError("--quick needs at least 20 training images (two per class)")
        bad = [s for s in self.retry if s not in STATUSES or s == "done"]
        if bad:
            raise ConfigError(f"--retry takes statuses from {', '.join(STATUSES[1:])}, not {', '.join(bad)}")
        if self.grid is not None and (self.best or self.additions):
            flag = "--best" if self.best else "--additions"
            raise ConfigError(
                f"{flag} picks its rows from the shipped grid files; it cannot be combined with --grid"
            )
        dask_client.check_scheduler(self.scheduler)


def selected_configs(cfg: SklearnBenchConfig) -> list[gridmod.BenchConfig]:
    """The configurations a run covers: the grid, or Table 3's rows (--best) and/or the additions, then --only."""
    if not (cfg.best or cfg.additions):
        return gridmod.select(gridmod.expand(gridmod.load_grid(cfg.grid)), cfg.only)
    configs: list[gridmod.BenchConfig] = []
    if cfg.best:
        from fmnist.baselines.published import best_configs

        configs += best_configs(gridmod.expand(gridmod.load_grid()))
    if cfg.additions:
        configs += gridmod.expand(gridmod.load_grid(gridmod.ADDITIONS_FILE), addition=True)
    return gridmod.select(configs, cfg.only)


# --------------------------------------------------------------------------- planning a run


@dataclass
class Plan:
    """What a run will do: jobs to start, rows to write without starting anything, and what is done."""

    configs: list[gridmod.BenchConfig]
    jobs: list[Job]
    refused: list[dict]  # rows for jobs refused before starting (memory estimate over the limit)
    finished: dict[str, dict]  # key -> row already in the results file
    n_train: int


def _training_labels(cfg: SklearnBenchConfig):
    _, y_train, _, _, _ = load_arrays(cfg.dataset, cfg.data_dir, cfg.data_npz)
    if cfg.quick is not None and cfg.quick >= len(y_train):
        raise ConfigError(f"--quick {cfg.quick} is not a subsample of the {len(y_train)} training images")
    y = np.asarray(y_train)
    return y[subsample_indices(y, cfg.quick, cfg.seed)]


def make_plan(cfg: SklearnBenchConfig) -> Plan:
    """Expand the grid, drop finished jobs, refuse those whose memory estimate is over the limit."""
    cfg.validate()
    configs = selected_configs(cfg)
    unknown = sorted({c.name for c in configs if c.name not in ESTIMATORS and ":" not in c.name})
    if unknown:
        raise ConfigError(
            f"grid names unknown estimators: {', '.join(unknown)} (use module:Class for others)"
        )
    finished = latest(read_results(cfg.results))
    labels = _training_labels(cfg)
    counts = np.bincount(labels.astype(np.int64))
    jobs, refused, done = [], [], {}
    for c in configs:
        key = job_key(cfg.dataset, cfg.quick, c.name, c.parameters)
        old = finished.get(key)
        if old is not None and old.get("status") not in cfg.retry:
            done[key] = old
            continue
        job = Job(
            key,
            c.name,
            c.parameters,
            cfg.dataset,
            cfg.data_dir,
            cfg.data_npz,
            cfg.quick,
            cfg.seed,
            cfg.repeats,
            cfg.time_limit,
            cfg.wall_limit if cfg.wall_limit is not None else WALL_FACTOR * cfg.time_limit,
            cfg.memory_limit_mb,
            cfg.threads,
            addition=c.addition,
        )
        need = memory_estimate(c.name, c.parameters, counts)
        if need is not None and need / 2**20 > cfg.memory_limit_mb:
            refused.append(_refused_row(job, need, len(labels)))
        else:
            jobs.append(job)
    return Plan(configs, jobs, refused, done, len(labels))


def _refused_row(job: Job, need_bytes: int, n_train: int) -> dict:
    reason = (
        f"refused before starting: needs at least {need_bytes / 2**30:,.1f} GiB "
        f"(n x n kernel matrices for {n_train:,} training images), over the limit of "
        f"{job.memory_limit_mb / 1024:,.1f} GiB per job"
    )
    row = result_row(job, [], "memory", reason, started=now_iso(), seconds=0.0, peak_mb=0.0, cpu_seconds=0.0)
    return {**row, "n_train": n_train}


# --------------------------------------------------------------------------- running


@contextlib.contextmanager
def _locked(results: Path) -> Iterator[None]:
    """One run per results file at a time (a lock on the file itself): two would compute the same jobs twice."""
    results.parent.mkdir(parents=True, exist_ok=True)
    try:
        fh = open(results, "a", encoding="utf-8")  # held for the whole run
    except OSError as exc:
        raise FmnistError(f"{results}: cannot open for appending ({exc.strerror or exc})") from None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FmnistError(f"{results}: another benchmark run is writing this file") from None
        yield


@contextlib.contextmanager
def _scratch_folder(path: Path) -> Iterator[None]:
    """A fresh folder for the run's job files; whatever a killed run left there is removed first."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _killing_on_error() -> Iterator[None]:
    """Leaving early (an interruption, an error) kills the running jobs before anything waits for them."""
    try:
        yield
    except BaseException:
        stop_jobs()  # the children die; rows already written stay
        raise


@contextlib.contextmanager
def _finished_rows(jobs: list[Job], n: int, scheduler: str | None) -> Iterator[Iterator[dict | None]]:
    """The jobs' rows as they end, ``n`` jobs at a time, from threads here or from Dask's workers."""
    if scheduler is None:
        from concurrent.futures import ThreadPoolExecutor, as_completed  # here: 3 ms that --help skips

        with ThreadPoolExecutor(n, thread_name_prefix="fmnist-job") as pool, _killing_on_error():
            yield (f.result() for f in as_completed([pool.submit(run_limited, job) for job in jobs]))
    else:
        from distributed import as_completed  # here: Dask is an extra, and --help imports this module

        # A LocalCluster's workers are threads of this process; the jobs' limits are their own.
        with dask_client.client(scheduler, n, processes=False) as dask, _killing_on_error():
            yield (f.result() for f in as_completed(dask.map(run_limited, jobs, pure=False)))


def describe_row(row: dict) -> str:
    """One line for the console."""
    params = json.dumps(row["parameters"], sort_keys=True)
    if row["status"] == "done":
        note = f" ({row['reason']})" if row.get("reason") else ""
        return (
            f"done    {row['mean_accuracy']:.4f} ±{row['std_accuracy']:.4f} x{row['repeats']} "
            f"{row['time_per_repeat']:7.1f} s/repeat  {row['name']} {params}{note}"
        )
    return f"{row['status']:<7} {row['name']} {params}: {row['reason']}"


def run_benchmark(cfg: SklearnBenchConfig, log: Callable[[str], None] = print) -> list[dict]:
    """Run every unfinished job of the grid, appending a row per job as it ends; the new rows."""
    results = Path(cfg.results)
    plan = make_plan(cfg)
    n_run = len(plan.jobs) + len(plan.refused)
    log(
        f"{len(plan.configs)} configurations: {len(plan.finished)} already in {results}, {n_run} to run "
        f"({cfg.dataset}, {plan.n_train:,} training images{' (quick)' if cfg.quick else ''})"
    )
    new: list[dict] = []

    def record(row: dict) -> None:
        append_result(results, row)
        new.append(row)
        log(f"[{len(new)}/{n_run}] {describe_row(row)}")

    reset_jobs()
    # The jobs' files live beside the results (not in /tmp), so a killed run's leftovers go at the restart;
    # a remote worker uses its own temporary folder.
    scratch = results.with_name(f".{results.name}.jobs")
    remote = cfg.scheduler not in (None, "local")
    jobs = plan.jobs if remote else [dataclasses.replace(j, scratch=str(scratch)) for j in plan.jobs]
    with _locked(results), _scratch_folder(scratch):
        write_json(results.with_suffix(".config.json"), dataclasses.asdict(cfg))  # beside the rows it made
        if repair_tail(results):
            log(f"{results}: dropped a last line cut by a kill")
        for row in plan.refused:
            record(row)
        if jobs:
            with _finished_rows(jobs, min(cfg.jobs, len(jobs)), cfg.scheduler) as rows:
                for row in rows:
                    if row is not None:
                        record(row)
    counts = Counter(r["status"] for r in new)
    log("finished: " + ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s]))
    return new
