"""Run a sweep's trainings on Dask (a LocalCluster or a scheduler address), resumably.

Each run is ``train`` + ``evaluate_run`` into its own folder under the sweep folder. A run whose
``evaluation.json`` exists is finished and is not redone; a run killed midway is resumed from its
checkpoint. One table (``sweep.md``, ``sweep.jsonl``) collects every run's figures; optionally the
best runs by validation accuracy are ensembled (softmax average) and scored on the test set.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from fmnist.errors import FmnistError
from fmnist.fsio import write_json, write_text
from fmnist.sweep.plan import PlannedRun

DONE_FILE = "evaluation.json"


def run_one(run_dir: str, config: dict, data_dir: str | None) -> dict:
    """Train (or resume) and evaluate one run; executed on a Dask worker. Returns its figures."""
    from fmnist.evaluate.report import evaluate_run
    from fmnist.train.config import TrainConfig
    from fmnist.train.trainer import train

    path = Path(run_dir)
    done = path / DONE_FILE
    if done.exists():
        return {**json.loads(done.read_text()), "reused": True}
    cfg = TrainConfig(**config)
    resume = (path / "config.json").exists()
    train(cfg, path, resume=resume, log=None, progress_bar=False)
    figures = evaluate_run(path, data_dir, "cpu" if cfg.device == "auto" else cfg.device)
    return {**figures, "reused": False}


def make_client(scheduler: str | None, workers: int, threads: int):
    """A Dask client: 'local' (or None) starts a LocalCluster of processes; tcp://HOST:PORT joins one."""
    from dask.distributed import Client, LocalCluster

    if scheduler in (None, "local"):
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env={"OMP_NUM_THREADS": str(threads)},
        )
        return Client(cluster), cluster
    if not scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        raise FmnistError(
            f"--scheduler must be 'local' or an address like tcp://HOST:8786, got {scheduler!r}"
        )
    try:
        return Client(scheduler, timeout="10s"), None
    except (OSError, TimeoutError) as exc:
        raise FmnistError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None


def run_sweep(
    runs: list[PlannedRun],
    out: Path,
    *,
    scheduler: str | None = None,
    workers: int = 2,
    threads: int = 1,
    ensemble: int = 0,
    data_dir: str | None = None,
) -> dict:
    """Run every planned run; write ``sweep.jsonl`` / ``sweep.md``; return the table (and ensemble)."""
    out.mkdir(parents=True, exist_ok=True)
    client, cluster = make_client(scheduler, workers, threads)
    try:
        futures = {
            client.submit(
                run_one,
                str(out / r.name),
                replace(r.config, threads=threads).to_dict(),
                data_dir,
                key=f"fmnist-run-{r.name}-{time.time_ns()}",
                pure=False,
            ): r
            for r in runs
        }
        rows = []
        from dask.distributed import as_completed

        for future in as_completed(futures):
            r = futures[future]
            try:
                figures = future.result()
            except FmnistError as exc:
                rows.append({"run": r.name, **r.params, "status": f"error: {exc}"})
                continue
            rows.append(
                {
                    "run": r.name,
                    **r.params,
                    "status": "reused" if figures["reused"] else "done",
                    "val_acc": figures.get("val_acc"),
                    "test_acc": figures["accuracy"],
                    "train_time_s": figures.get("train_time_s"),
                    "ece": figures["ece"],
                }
            )
            print(
                f"{r.name}: test {figures['accuracy']:.4f}"
                + (" (finished before)" if figures["reused"] else ""),
                flush=True,
            )
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    rows.sort(key=lambda row: row["run"])
    result: dict = {"runs": rows}
    if ensemble:
        result["ensemble"] = ensemble_best(out, rows, ensemble, data_dir)
    write_text(out / "sweep.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    write_json(out / "sweep.json", result)
    write_text(out / "sweep.md", table(result))
    return result


def ensemble_best(out: Path, rows: list[dict], k: int, data_dir: str | None) -> dict:
    """Average the softmax of the ``k`` best runs by validation accuracy; score on the test set."""
    from fmnist.data.loader import load_dataset
    from fmnist.models.checkpoint import load_model

    done = [r for r in rows if r.get("val_acc") is not None]
    best = sorted(done, key=lambda r: -r["val_acc"])[:k]
    if not best:
        raise FmnistError("no finished run to ensemble")
    models = [load_model(out / r["run"]) for r in best]
    ds = load_dataset(models[0].record.get("dataset", "fashion"), data_dir)
    images, labels = np.asarray(ds.test.images), np.asarray(ds.test.labels)
    probs = np.mean([m.predict_proba(images) for m in models], axis=0)
    return {
        "runs": [r["run"] for r in best],
        "test_acc": float((probs.argmax(1) == labels).mean()),
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
    if "ensemble" in result:
        e = result["ensemble"]
        lines += [
            "",
            f"Ensemble of {len(e['runs'])} best runs by validation accuracy: test accuracy {e['test_acc']:.4f}",
        ]
    return "\n".join(lines) + "\n"
