"""An estimate, not a measurement: the full grid's CPU time from rows measured on a subsample.

Each configuration's measured fit and test CPU seconds on ``n`` training images (a ``--quick`` run)
are scaled to ``N`` (60,000) by its family's cost law below, times the repeats the full run will make
(2 when the quick run's two scores agreed within 1e-3, as the runner then stops; else 3), plus the
job's measured start-up (kept constant). The test set (10,000 images) is the same at both sizes, so
test time grows only where each prediction looks at the training set.

The laws are textbook costs, and each is a guess about constants too: SMO (libsvm) needs between
n^2 and n^3 kernel evaluations, so SVC's n^2 is a lower bound; iterative models are taken to need the
same number of passes at both sizes. A 30x extrapolation of a seconds-long measurement can be off by
2x either way; a job that timed out on the subsample only gives a lower bound. Rows refused for
memory (the Gaussian process) are listed, not estimated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from fmnist.baselines.estimators import memory_estimate
from fmnist.baselines.grid import BenchConfig
from fmnist.baselines.results import latest
from fmnist.baselines.worker import AGREE

# family -> (fit law, test law, why). A law is "1" (n), "nlogn", "2" (n^2), "3" (n^3) or "0" (constant).
LAWS: dict[str, tuple[str, str, str]] = {
    "SVC": ("2", "1", "SMO: at least n^2 kernel evaluations; support vectors (predict cost) grow with n"),
    "KNeighborsClassifier": (
        "1",
        "1",
        "fit stores the data; each test image is compared with every training image",
    ),
    "GaussianProcessClassifier": ("3", "1", "Cholesky of an n x n kernel matrix"),
    "DecisionTreeClassifier": ("nlogn", "0", "sorting at each level of the tree"),
    "ExtraTreeClassifier": ("nlogn", "0", "as a decision tree"),
    "RandomForestClassifier": ("nlogn", "0", "one n log n tree per estimator"),
    "GradientBoostingClassifier": ("nlogn", "0", "one n log n tree per class per stage"),
    "HistGradientBoostingClassifier": ("1", "0", "binned features: linear per tree"),
    "GaussianNB": ("1", "0", "one pass over the data"),
}
# CPU seconds of a job before its first fit (interpreter, imports, data, sanity check): 1.2-3 s measured
# on the 2-vCPU machine; taken off a timed-out job's CPU time so that its lower bound stays one.
START_UP = 3.0
DEFAULT_LAW = ("1", "0", "passes over the data (linear models, MLP): same number of passes assumed")


def scale(law: str, n: int, big_n: int) -> float:
    """How much more a cost following ``law`` is at ``big_n`` images than at ``n``."""
    r = big_n / n
    return {"0": 1.0, "1": r, "nlogn": r * math.log(big_n) / math.log(n), "2": r**2, "3": r**3}[law]


@dataclass
class Estimate:
    config: BenchConfig
    law: tuple[str, str, str]
    cpu_seconds: float | None  # estimated CPU seconds of the whole job at full size; None: not measured
    lower_bound: bool  # the subsample run timed out: at least this much
    measured_n: int | None
    note: str  # why there is no figure, or what it rests on


def estimate_config(
    config: BenchConfig, row: dict | None, big_n: int, memory_limit_mb: float, full_repeats: int = 3
) -> Estimate:
    """One configuration's estimated CPU seconds at ``big_n`` training images from its subsample row.

    A configuration the runner would refuse at ``big_n`` for memory (over ``memory_limit_mb``) costs nothing.
    """
    law = LAWS.get(config.family, DEFAULT_LAW)
    need = memory_estimate(config.name, config.parameters, [big_n // 10] * 10)
    if need is not None and need / 2**20 > memory_limit_mb:
        return Estimate(
            config, law, None, False, None, f"refused for memory at full size: {need / 2**30:,.0f} GiB"
        )
    if row is None:
        return Estimate(config, law, None, False, None, "not measured")
    n = row.get("n_train") or row.get("subsample")
    status = row.get("status")
    if status == "skipped":  # rejected by the 20-image sanity check: costs its start-up only
        return Estimate(
            config, law, row.get("cpu_seconds") or 0.0, False, n, "skipped: " + row.get("reason", "")
        )
    if status == "memory" and (row.get("wall_seconds") or 0) == 0:
        return Estimate(config, law, None, False, n, "refused for memory: not run")
    if not n or n >= big_n:
        return Estimate(config, law, None, False, n, "not a subsample row")
    fit_cpu, test_cpu = row.get("train_cpu_seconds"), row.get("test_cpu_seconds")
    note = f"measured on {n:,} images"
    if test_cpu is None and row.get("time_per_repeat") is not None and row.get("train_seconds") is not None:
        test_cpu = row["time_per_repeat"] - row["train_seconds"]
        note += " (test time: wall seconds, an overestimate on a busy machine)"
    if status != "done" or fit_cpu is None:  # its first fit ran past the limit: a lower bound
        fit_at_least = max(0.0, (row.get("cpu_seconds") or 0.0) - START_UP)
        return Estimate(
            config, law, 2 * fit_at_least * scale(law[0], n, big_n), True, n, f"{status} on {n:,} images"
        )
    scores = row.get("scores") or []
    repeats = 2 if len(scores) >= 2 and abs(scores[0] - scores[1]) < AGREE else full_repeats
    per_repeat = fit_cpu * scale(law[0], n, big_n) + (test_cpu or 0.0) * scale(law[1], n, big_n)
    start_up = max(0.0, (row.get("cpu_seconds") or 0.0) - len(scores) * (fit_cpu + (test_cpu or 0.0)))
    return Estimate(config, law, repeats * per_repeat + start_up, False, n, note)


def estimate_grid(
    configs: Sequence[BenchConfig],
    rows: Sequence[dict],
    dataset: str = "fashion",
    big_n: int = 60_000,
    memory_limit_mb: float | None = None,
) -> list[Estimate]:
    """Every configuration's estimate from the subsample rows of ``dataset`` (the largest subsample measured)."""
    by_config: dict[str, dict] = {}
    for row in latest(rows).values():
        n = row.get("subsample")
        if row.get("dataset") != dataset or n is None or row.get("source", "sklearn") != "sklearn":
            continue
        key = BenchConfig(row["name"], row.get("parameters", {})).key
        old = by_config.get(key)
        if old is None or n > old["subsample"]:
            by_config[key] = row
    if memory_limit_mb is None:
        from fmnist.baselines.job import default_memory_limit_mb

        memory_limit_mb = default_memory_limit_mb(1)
    return [estimate_config(c, by_config.get(c.key), big_n, memory_limit_mb) for c in configs]


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h"


def estimate_text(
    estimates: Sequence[Estimate], big_n: int, jobs: int = 1, time_limit: float | None = 3600.0
) -> str:
    """The per-family table and the total, saying plainly that it is an estimate and what it rests on.

    With ``time_limit`` (the run's CPU seconds per job), also what a run under that limit spends: the
    runner stops each job there, so the estimate is capped per job, and the jobs that would hit it are counted.
    """
    lines = [
        f"ESTIMATE (not a measurement) of the CPU time of {len(estimates)} configurations on {big_n:,} "
        "training images, scaled from subsample runs:",
        "",
        "| family | configurations | estimated CPU | fit scales as | test scales as | why |",
        "|---|---:|---:|---|---|---|",
    ]
    pretty = {"0": "constant", "1": "n", "nlogn": "n log n", "2": "n^2 (at least)", "3": "n^3"}
    families = list(dict.fromkeys(e.config.family for e in estimates))
    total = bound = 0.0
    missing: list[Estimate] = []
    for fam in families:
        mine = [e for e in estimates if e.config.family == fam]
        known = [e for e in mine if e.cpu_seconds is not None]
        missing += [e for e in mine if e.cpu_seconds is None]
        secs = sum(e.cpu_seconds for e in known)
        at_least = any(e.lower_bound for e in known)
        total += secs
        bound += sum(e.cpu_seconds for e in known if e.lower_bound)
        law = mine[0].law
        figure = ("at least " if at_least else "") + _hours(secs) if known else "not measured"
        lines.append(f"| {fam} | {len(mine)} | {figure} | {pretty[law[0]]} | {pretty[law[1]]} | {law[2]} |")
    lines += [
        "",
        f"total: {'at least ' if bound else ''}{_hours(total)} of CPU "
        f"({_hours(bound)} of it lower bounds from jobs that timed out on the subsample); "
        f"about {_hours(total / max(1, jobs))} of wall time at {jobs} job(s) at once, on idle cores.",
    ]
    if time_limit:
        known = [e.cpu_seconds for e in estimates if e.cpu_seconds is not None]
        over = sum(1 for c in known if c > time_limit)
        capped = sum(min(c, time_limit) for c in known)
        lines.append(
            f"under --time-limit {time_limit:g} (CPU seconds per job): about {_hours(capped)} of CPU, "
            f"{_hours(capped / max(1, jobs))} of wall time at {jobs} job(s); {over} job(s) would reach the "
            "limit and keep only the repeats they finished."
        )
    walled = sum(1 for e in estimates if "wall seconds" in e.note)
    if walled:
        lines.append(
            f"{walled} configurations' test time is wall time (rows from before test CPU was recorded): "
            "an overestimate where the machine was busy."
        )
    if missing:
        lines.append(
            f"not included ({len(missing)}): " + "; ".join(f"{e.config.key} ({e.note})" for e in missing)
        )
    return "\n".join(lines)
