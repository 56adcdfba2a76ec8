"""Run a sweep's trainings on Dask (a LocalCluster or a scheduler address), resumably.

Each run is ``train`` + ``evaluate_run`` into its own folder under the sweep folder. A run whose
``evaluation.json`` exists is finished and is not redone; a run killed midway is resumed from its
checkpoint. A run folder whose config.json disagrees with the plan (the plan changed since) is an
error row, never reused or resumed. One table (``sweep.md``, ``sweep.jsonl``) collects every run's
figures; optionally the best runs by validation accuracy are ensembled (softmax average) and scored
on the test set.
"""

from __future__ import annotations

import json
import time
from dataclasses import astuple, fields, replace
from pathlib import Path

import numpy as np
from distributed import as_completed

from fmnist import dask_client
from fmnist.data.loader import load_dataset
from fmnist.errors import FmnistError
from fmnist.evaluate.record import read_evaluation
from fmnist.evaluate.report import evaluate_run
from fmnist.fsio import write_json, write_text
from fmnist.models.inference import load_model
from fmnist.models.scoring import accuracy, ensemble
from fmnist.sweep.plan import DEFAULT_OPTIONS, PlannedRun, SweepOptions
from fmnist.train.config import TrainConfig
from fmnist.train.run_folder import CONFIG_FILE, MACHINE_KNOBS
from fmnist.train.trainer import train

DONE_FILE = "evaluation.json"


def run_one(run_dir: str, config: dict, data_dir: str | None) -> dict:
    """Train (or resume) and evaluate one run; executed on a Dask worker. Returns its figures."""
    path = Path(run_dir)
    cfg = TrainConfig(**config)
    check_same_plan(path, cfg)
    if (path / DONE_FILE).exists():  # finished; a damaged evaluation.json is one line, never overwritten
        return {**read_evaluation(path).to_dict(), "reused": True}
    resume = (path / "config.json").exists()
    train(cfg, path, resume=resume, log=None, progress_bar=False)
    figures = evaluate_run(path, data_dir, "cpu" if cfg.device == "auto" else cfg.device).to_dict()
    return {**figures, "reused": False}


def run_task(run_dir: str, config: dict, data_dir: str | None) -> dict:
    """``run_one`` as a Dask task: a user error comes back as ``{"error": message}``, not raised, so the
    worker does not log it with a traceback on the sweep's stderr (the table and the exit status say it)."""
    try:
        return run_one(run_dir, config, data_dir)
    except FmnistError as exc:
        return {"error": str(exc)}


def check_same_plan(path: Path, cfg) -> None:
    """Refuse a run folder that an earlier plan made with other settings (a changed [base], say).

    Run folders are named by their grid values only, so without this a sweep re-run into the same
    --out with, e.g., more epochs would report the old runs' figures as the new plan's, or resume
    them with their old settings. Machine knobs (threads, device, data folder, compile) may differ.
    """
    saved_path = path / CONFIG_FILE
    if not saved_path.exists():
        return
    try:
        saved = json.loads(saved_path.read_text())
    except (OSError, ValueError) as exc:
        raise FmnistError(
            f"{saved_path}: unreadable run config ({exc}); remove {path} to train it again"
        ) from None
    if not isinstance(saved, dict):
        raise FmnistError(f"{saved_path}: not a run config; remove {path} to train it again")
    differ = [
        f"{f.name} = {getattr(cfg, f.name)!r} in the plan, {saved[f.name]!r} in the folder"
        for f in fields(cfg)
        if f.name not in (*MACHINE_KNOBS, "preset")
        and f.name in saved
        and saved[f.name] != getattr(cfg, f.name)
    ]
    if differ:
        raise FmnistError(
            f"run folder {path.name} was trained with other settings than the plan's ({'; '.join(differ)}); "
            f"use a new --out, or remove {path} to train it again"
        )


def run_sweep(runs: list[PlannedRun], out: Path, options: SweepOptions = DEFAULT_OPTIONS) -> dict:
    """Run every planned run; write ``sweep.jsonl`` / ``sweep.md``; return the table (and ensemble)."""
    scheduler, workers, threads, ensemble, data_dir = astuple(options)
    out.mkdir(parents=True, exist_ok=True)
    with dask_client.client(scheduler, workers, threads=threads) as client:
        futures = {
            client.submit(
                run_task,
                str(out / r.name),
                replace(r.config, threads=threads).to_dict(),
                data_dir,
                key=f"fmnist-run-{r.name}-{time.time_ns()}",
                pure=False,
            ): r
            for r in runs
        }
        rows = []
        for future in as_completed(futures):
            r = futures[future]
            try:
                figures = future.result()
            except FmnistError as exc:
                figures = {"error": str(exc)}
            rows.append(figure_row(r.name, r.params, figures))
            if "error" not in figures:
                print(
                    f"{r.name}: test {figures['accuracy']:.4f}"
                    + (" (finished before)" if figures["reused"] else ""),
                    flush=True,
                )
    rows.sort(key=lambda row: row["run"])
    return finish(out, {"runs": rows}, ensemble, data_dir)


def figure_row(name: str, params: dict, figures: dict, status: str | None = None) -> dict:
    """One table row from ``run_one``'s figures (or its ``{"error": ...}``)."""
    if "error" in figures:
        return {"run": name, **params, "status": f"error: {figures['error']}"}
    return {
        "run": name,
        **params,
        "status": status or ("reused" if figures["reused"] else "done"),
        "val_acc": figures.get("val_acc"),
        "test_acc": figures["accuracy"],
        "train_time_s": figures.get("train_time_s"),
        "ece": figures["ece"],
    }


def finish(out: Path, result: dict, ensemble: int, data_dir: str | None) -> dict:
    """Ensemble if asked; write ``sweep.jsonl`` / ``sweep.json`` / ``sweep.md``; return ``result``."""
    rows = result["runs"]
    if ensemble and any(r.get("val_acc") is not None for r in rows):  # else the failed runs say why
        result["ensemble"] = ensemble_best(out, rows, ensemble, data_dir)
    write_text(out / "sweep.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    write_json(out / "sweep.json", result)
    write_text(out / "sweep.md", table(result))
    return result


def ensemble_best(out: Path, rows: list[dict], k: int, data_dir: str | None) -> dict:
    """Average the softmax of the ``k`` best runs by validation accuracy; score on the test set."""
    done = [r for r in rows if r.get("val_acc") is not None]
    best = sorted(done, key=lambda r: -r["val_acc"])[:k]
    if not best:
        raise FmnistError("no finished run to ensemble")
    models = [load_model(out / r["run"]) for r in best]
    ds = load_dataset(models[0].record.get("dataset", "fashion"), data_dir)
    images, labels = np.asarray(ds.test.images), np.asarray(ds.test.labels)
    probs = ensemble([m.predict_proba(images) for m in models])
    return {
        "runs": [r["run"] for r in best],
        "test_acc": accuracy(probs, labels),
        "chosen_by": "validation accuracy",
    }


def table(result: dict) -> str:
    rows = result["runs"]
    params = (
        [k for k in rows[0] if k not in {"run", "status", "val_acc", "test_acc", "train_time_s", "ece"}]
        if rows
        else []
    )
    head = ["run", *params, "status", "val acc", "test acc", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["run"],
            *[str(r.get(p, "")) for p in params],
            r["status"],
            f"{r['val_acc']:.4f}" if r.get("val_acc") is not None else "—",
            f"{r['test_acc']:.4f}" if r.get("test_acc") is not None else "—",
            f"{r['train_time_s']:.1f}" if r.get("train_time_s") else "—",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if "best" in result:
        b = result["best"]
        lines += [
            "",
            f"Best trial by validation accuracy: {b['run']} (val acc {b['val_acc']:.4f}) {b['params']}",
        ]
    if "ensemble" in result:
        e = result["ensemble"]
        lines += [
            "",
            f"Ensemble of {len(e['runs'])} best runs by validation accuracy: test accuracy {e['test_acc']:.4f}",
        ]
    return "\n".join(lines) + "\n"
