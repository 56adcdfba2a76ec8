"""Benchmark result rows: one JSON object per finished job, appended to a JSONL file.

The file is the benchmark's only state. A run appends a row when a job ends (``fsync``'d, so a
kill can cut at most a final partial line, which :func:`repair_tail` drops); a restarted run skips
every key already there. Rows from other benchmarks (the CNN's) go into the same file through
:func:`append_external_result`, so one dashboard ranks everything.

A row holds: ``key`` (data set / training size / name / parameters), ``source`` ("sklearn",
"cnn"), ``family``, ``name``, ``parameters`` (the grid's spelling), ``estimator`` (what actually
ran), ``mapped`` (renames applied), ``dataset``, ``fingerprint`` (of the data), ``quick`` and
``subsample`` (training images when quick, else null), ``n_train``, ``n_test``, ``status`` (done,
skipped, timeout, memory, error) and ``reason``, ``scores``, ``mean_accuracy``, ``std_accuracy``
(population std of the scores; the original logged twice that), ``repeats``, ``start_time`` and
``done_time`` (ISO 8601, UTC), ``time_per_repeat`` (fit + test seconds), ``train_seconds``,
``train_cpu_seconds`` and ``test_cpu_seconds`` (per repeat), ``peak_rss_mb``, ``time_limit_s``,
``memory_limit_mb``, ``sklearn``, ``host``, ``machine`` (CPU model, cores, AVX2/AVX-512/bf16:
:mod:`fmnist.machine`), ``addition`` (a row of additions.json). Rows from before
``machine`` existed have only ``host``.

``fmnist bench add`` also reads a CNN benchmark's ``cnn.json`` (:func:`cnn_bench_rows`): one row per
recipe, with its training size and machine.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fmnist.errors import FmnistError
from fmnist.fsio import append_line, read_jsonl

STATUSES = ("done", "skipped", "timeout", "memory", "error")


class ResultsError(FmnistError):
    """A results file cannot be read, or a row to add is malformed."""


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def job_key(dataset: str, subsample: int | None, name: str, parameters: dict[str, Any]) -> str:
    """Identity of one job: what a restarted run looks up to skip finished work."""
    size = "full" if subsample is None else str(subsample)
    return f"{dataset}/{size}/{name} {json.dumps(parameters, sort_keys=True)}"


def read_results(path: str | os.PathLike) -> list[dict]:
    """All rows of a results file ([] if it does not exist); anything but a cut last line is an error."""
    try:
        rows = read_jsonl(path, strict=True)
    except IsADirectoryError:
        raise ResultsError(f"{path}: is a folder, not a results file") from None
    except UnicodeDecodeError:
        raise ResultsError(f"{path}: not a text file; not a results file") from None
    except ValueError as exc:  # a complete line that is not JSON
        raise ResultsError(f"{exc}; not a results file") from None
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict) or "key" not in row or "status" not in row:
            raise ResultsError(f"{path}: row {number} is not a result row (needs 'key' and 'status')")
    return rows


def repair_tail(path: str | os.PathLike) -> bool:
    """Make the file end with a newline: drop a final line cut by a kill, or terminate a whole one."""
    path = Path(path)
    if not path.exists():
        return False
    with open(path, "rb+") as fh:
        data = fh.read()
        if not data or data.endswith(b"\n"):
            return False
        cut = data.rfind(b"\n") + 1
        try:
            json.loads(data[cut:])
            fh.write(b"\n")  # a whole row that lacks only its newline
        except ValueError:
            fh.truncate(cut)
        fh.flush()
        os.fsync(fh.fileno())
    return True


def latest(rows: Iterable[dict]) -> dict[str, dict]:
    """The last row per key: a retried job's new row replaces its old one."""
    out: dict[str, dict] = {}
    for row in rows:
        out[row["key"]] = row
    return out


def append_result(path: str | os.PathLike, row: dict) -> None:
    """Append one row (one line, fsync'd)."""
    if "key" not in row or row.get("status") not in STATUSES:
        raise ResultsError(f"a result row needs a 'key' and a status in {STATUSES}")
    append_line(path, json.dumps(row, allow_nan=False, default=str))


def _number(row: dict, field: str, low: float = 0.0, high: float = math.inf) -> float | None:
    value = row.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        what = "a fraction in [0, 1], not a percentage" if high == 1.0 else f"a number in [{low:g}, {high:g}]"
        raise ResultsError(f"result row: {field!r} must be {what}, got {value!r}")
    return float(value)


def external_row(row: dict, source: str = "cnn") -> dict:
    """Check and complete a row from another benchmark (a CNN's) so it ranks with the scikit-learn rows.

    Needs ``name``, ``dataset`` and ``mean_accuracy`` (a fraction) or ``scores``; may give
    ``parameters``, ``family`` (default: the source in capitals), ``train_seconds`` or
    ``time_per_repeat``, ``std_accuracy`` (or ``std``) and ``repeats`` (when no ``scores``),
    ``subsample``, ``start_time``/``done_time``, ``fingerprint``, ``estimator``.
    """
    if not isinstance(row, dict):
        raise ResultsError("a result row must be a JSON object")
    name, dataset = row.get("name"), row.get("dataset")
    if not isinstance(name, str) or not name or not isinstance(dataset, str) or not dataset:
        raise ResultsError("a result row needs 'name' and 'dataset' strings")
    params = row.get("parameters", {})
    if not isinstance(params, dict):
        raise ResultsError("result row: 'parameters' must be an object")
    scores = row.get("scores")
    if scores is not None and (
        not isinstance(scores, list)
        or not scores
        or not all(isinstance(s, int | float) and 0 <= s <= 1 for s in scores)
    ):
        raise ResultsError("result row: 'scores' must be a non-empty list of fractions in [0, 1]")
    mean = _number(row, "mean_accuracy", 0.0, 1.0)
    if mean is None and scores:
        mean = sum(scores) / len(scores)
    if mean is None:
        raise ResultsError("a result row needs 'mean_accuracy' (a fraction in [0, 1]) or 'scores'")
    repeats = row.get("repeats")
    if repeats is not None and (isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1):
        raise ResultsError("result row: 'repeats' must be a positive count")
    std = _number(row, "std_accuracy", 0.0, 1.0)
    if std is None:
        std = _number(row, "std", 0.0, 1.0)  # the shorter name some benchmarks write
    if std is None:
        std = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores)) if scores else 0.0
    repeats = repeats or (len(scores) if scores else 1)
    scores = scores or [mean]
    subsample = row.get("subsample")
    if subsample is not None and (not isinstance(subsample, int) or subsample < 1):
        raise ResultsError("result row: 'subsample' must be a positive count of training images or null")
    for field in ("train_seconds", "time_per_repeat", "peak_rss_mb"):
        _number(row, field)
    n_train = row.get("n_train")
    if n_train is not None and (isinstance(n_train, bool) or not isinstance(n_train, int) or n_train < 1):
        raise ResultsError("result row: 'n_train' must be a positive count of training images or null")
    if row.get("machine") is not None and not isinstance(row["machine"], str):
        raise ResultsError("result row: 'machine' must be a string describing where it ran")
    out = {
        **row,
        "key": job_key(dataset, subsample, name, params),
        "source": row.get("source", source),
        "family": row.get("family") or source.upper(),
        "name": name,
        "parameters": params,
        "dataset": dataset,
        "quick": subsample is not None,
        "subsample": subsample,
        "status": "done",
        "reason": row.get("reason", ""),
        "scores": scores,
        "mean_accuracy": mean,
        "std_accuracy": std,
        "repeats": repeats,
        "done_time": row.get("done_time") or now_iso(),
    }
    out.setdefault("start_time", out["done_time"])
    out.setdefault("train_seconds", out.get("time_per_repeat"))
    out.setdefault("time_per_repeat", out.get("train_seconds"))
    return out


def append_external_result(results_path: str | os.PathLike, row: dict, source: str = "cnn") -> dict:
    """Add a CNN (or other) result to a results file; returns the stored row. A re-run replaces it in reports."""
    full = external_row(row, source)
    read_results(results_path)  # refuse to append to something that is not a results file
    repair_tail(results_path)
    append_result(results_path, full)
    return full


def load_rows_file(path: str | os.PathLike) -> list[dict]:
    """Rows to add from a file: one JSON object, a JSON list of objects, or JSON lines."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(f"{path}: not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: cannot read ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise ResultsError(f"{path}: neither JSON nor JSON lines ({exc.msg})") from None
    if isinstance(data, dict) and isinstance(data.get("table"), list) and "machine" in data:
        return cnn_bench_rows(data)  # `fmnist bench cnn`'s cnn.json
    rows = data if isinstance(data, list) else [data]
    if not rows:
        raise ResultsError(f"{path}: holds no result rows")
    return rows


def _cnn_training_images(recipe: str, config: dict) -> int | None:
    """Training images of a ``fmnist bench cnn`` recipe: its data less the validation split it holds out.

    Presets hold out their ``val_size`` (the trainer's rule, via :func:`fmnist.train.config.make_config`);
    the plain-PyTorch references hold out ``min(5000, n // 10)`` (``fmnist.bench.cnn.run_reference``).
    """
    n = config.get("train_limit") or 60_000
    if recipe.startswith("reference-"):
        return n - min(5000, n // 10)
    try:
        from fmnist.train.config import (  # no torch; only where a cnn.json is read
            make_config,
            validation_size,
        )

        val = make_config(recipe, train_limit=config.get("train_limit")).val_size
    except (FmnistError, KeyError):  # a recipe this version does not know: size unknown, not an error
        return None
    return n - validation_size(val, n, config.get("train_limit") is not None)


def cnn_bench_rows(result: dict) -> list[dict]:
    """Rows for the results table from ``fmnist bench cnn``'s cnn.json: one per recipe, mean over its seeds.

    Named and keyed like ``fmnist bench cnn --add-to`` (``CNN RECIPE``), so adding the file after
    ``--add-to`` replaces those rows; adds the training size (``n_train``: the recorded one, else
    the trainer's split) and the machine line from the file's ``machine``.
    """
    from fmnist.machine import machine_line

    config = result.get("config") if isinstance(result.get("config"), dict) else {}
    info = result.get("machine") if isinstance(result.get("machine"), dict) else None
    limit = config.get("train_limit")
    rows = []
    for line in result["table"]:
        if not isinstance(line, dict) or not isinstance(line.get("recipe"), str):
            raise ResultsError("cnn.json: every 'table' entry needs a 'recipe'")
        n_train = line.get("n_train") or _cnn_training_images(line["recipe"], config)
        rows.append(
            {
                "name": f"CNN {line['recipe']}",
                "dataset": "fashion",
                "mean_accuracy": line.get("acc_mean"),
                "std": line.get("acc_std"),
                "repeats": line.get("seeds"),
                "time_per_repeat": line.get("train_time_s"),
                "parameters": {"recipe": line["recipe"], "params": line.get("params")},
                "subsample": limit if isinstance(limit, int) else None,
                "n_train": n_train,
                "machine": machine_line(info) if info else None,
                "done_time": _iso(result.get("when")),
            }
        )
    return rows


def _iso(when: object) -> str | None:
    """cnn.json's local "YYYY-MM-DD HH:MM:SS" as ISO 8601 (no zone: the file does not say which)."""
    return when.replace(" ", "T") if isinstance(when, str) and when else None
