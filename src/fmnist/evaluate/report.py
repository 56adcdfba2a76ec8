"""``evaluate_run``: score a run folder's best model on the test set, write report.md and pictures.

This is the only place the test set is read for a training run: once, at the end.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from fmnist.errors import FmnistError
from fmnist.evaluate.metrics import confidently_wrong, confusion_matrix, expected_calibration_error, per_class
from fmnist.evaluate.pictures import confusion_png, gallery_png
from fmnist.fsio import read_jsonl, write_json, write_text
from fmnist.models.checkpoint import MODEL_FILE, load_model, load_record, save

EVALUATION_FILE = "evaluation.json"
REPORT_FILE = "report.md"


def evaluate_arrays(probs: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """All the figures for predicted probabilities ``probs`` (n, k) against ``labels``."""
    preds = probs.argmax(1)
    cm = confusion_matrix(labels, preds, len(classes))
    pc = per_class(cm)
    ece, bins = expected_calibration_error(probs, labels)
    return {
        "accuracy": float((preds == labels).mean()),
        "n": int(len(labels)),
        "per_class": {
            name: {
                "precision": float(pc["precision"][i]),
                "recall": float(pc["recall"][i]),
                "f1": float(pc["f1"][i]),
                "support": int(pc["support"][i]),
            }
            for i, name in enumerate(classes)
        },
        "macro_f1": float(pc["f1"].mean()),
        "confusion_matrix": cm.tolist(),
        "ece": ece,
        "calibration_bins": bins,
    }


def evaluate_run(
    run_dir: str | Path,
    data_dir: str | None = None,
    device: str = "cpu",
    batch_size: int = 1024,
    flip_tta: bool = False,
) -> dict:
    """Score ``run_dir/model.pt`` on its data set's test split; write the report files; return the figures.

    With ``flip_tta`` each image is scored with its mirror too; the report says so, and model.pt gets
    ``test_acc_flip_tta`` while its plain ``test_acc`` (what predict and serve deliver) is left alone.
    """
    from fmnist.data.loader import load_dataset

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FmnistError(f"{run_dir}: no such run folder")
    loaded = load_model(run_dir, device)
    record = loaded.record
    ds = load_dataset(record.get("dataset", "fashion"), data_dir)
    if list(ds.classes) != list(loaded.classes):
        raise FmnistError(f"{run_dir}: model classes do not match data set {ds.name!r}")
    images, labels = np.asarray(ds.test.images), np.asarray(ds.test.labels).astype(np.int64)
    t0 = time.perf_counter()
    probs = loaded.predict_proba(images, batch_size, flip_tta)
    seconds = time.perf_counter() - t0
    figures = evaluate_arrays(probs, labels, loaded.classes)
    figures.update(
        {
            "run_dir": str(run_dir),
            "model": record["arch"],
            "arch_kwargs": record["arch_kwargs"],
            "epoch": record["epoch"],
            "val_acc": record["metrics"].get("val_acc"),
            "dataset": ds.name,
            "data_fingerprint": ds.fingerprint,
            "trained_on_fingerprint": record.get("data_fingerprint"),
            "inference_images_per_s": len(labels) / max(seconds, 1e-9),
            "train_time_s": _train_time(run_dir),
            "tta": "flip" if flip_tta else None,
        }
    )
    if figures["trained_on_fingerprint"] not in (None, ds.fingerprint):
        figures["warning"] = "the model was trained on data with another fingerprint"

    wrong = confidently_wrong(probs, labels, 25)
    captions = [
        f"#{i} true {loaded.classes[labels[i]]}\npred {loaded.classes[probs[i].argmax()]} {probs[i].max():.2f}"
        for i in wrong
    ]
    confusion_png(
        np.array(figures["confusion_matrix"]),
        loaded.classes,
        run_dir / "confusion.png",
        f"{record['arch']} on {ds.spec.title} test: accuracy {figures['accuracy']:.4f}",
    )
    gallery_png(images[wrong], captions, run_dir / "errors.png", "Most confidently wrong test images")
    figures["most_confident_errors"] = [
        {
            "index": int(i),
            "true": loaded.classes[labels[i]],
            "pred": loaded.classes[int(probs[i].argmax())],
            "confidence": float(probs[i].max()),
        }
        for i in wrong
    ]
    write_json(run_dir / EVALUATION_FILE, figures)
    write_text(run_dir / REPORT_FILE, render_report(figures, loaded.classes, record))
    _stamp_test_accuracy(run_dir / MODEL_FILE, figures)
    return figures


def _train_time(run_dir: Path) -> float | None:
    rows = read_jsonl(run_dir / "metrics.jsonl")
    return rows[-1].get("cum_train_time_s") if rows else None


def _stamp_test_accuracy(path: Path, figures: dict) -> None:
    """Record the test accuracy in model.pt so predict/serve can report it (atomic rewrite)."""
    record = load_record(path)
    if figures.get("tta"):
        stamp = {f"test_acc_{figures['tta']}_tta": figures["accuracy"]}
    else:
        stamp = {"test_acc": figures["accuracy"], "ece": figures["ece"]}
    record["metrics"] = {**record.get("metrics", {}), **stamp}
    save(record, path)


def render_report(f: dict, classes: list[str], record: dict) -> str:
    """report.md: readable on its own, with the config and the pictures beside it."""
    lines = [
        f"# Evaluation: {f['model']} on {f['dataset']} test set",
        "",
        f"- **Test accuracy: {f['accuracy']:.4f}** on {f['n']:,} images (macro F1 {f['macro_f1']:.4f})"
        + (" with flip test-time augmentation (each image and its mirror)" if f.get("tta") else ""),
        f"- Expected calibration error (15 bins): {f['ece']:.4f}",
        f"- Best epoch {f['epoch']} chosen by validation accuracy {f['val_acc']:.4f} (validation split carved from training data)"
        if f.get("val_acc") is not None and f["val_acc"] == f["val_acc"]
        else f"- Epoch {f['epoch']}",
        f"- Training time: {f['train_time_s']:.1f} s"
        if f.get("train_time_s")
        else "- Training time: unknown",
        f"- Data fingerprint: `{f['data_fingerprint']}` (trained on `{f['trained_on_fingerprint']}`)",
        f"- Inference: {f['inference_images_per_s']:,.0f} images/s",
        "",
        "## Per class",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in classes:
        pc = f["per_class"][name]
        lines.append(
            f"| {name} | {pc['precision']:.4f} | {pc['recall']:.4f} | {pc['f1']:.4f} | {pc['support']} |"
        )
    lines += [
        "",
        "## Confusion matrix (rows: true, columns: predicted)",
        "",
        "![confusion](confusion.png)",
        "",
    ]
    short = [c[:8] for c in classes]
    lines.append("| true \\ pred | " + " | ".join(short) + " |")
    lines.append("|---|" + "---:|" * len(classes))
    for name, row in zip(classes, f["confusion_matrix"], strict=True):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    lines += [
        "",
        "## Most confidently wrong test images",
        "",
        "![errors](errors.png)",
        "",
        "| index | true | predicted | confidence |",
        "|---:|---|---|---:|",
    ]
    for e in f["most_confident_errors"][:10]:
        lines.append(f"| {e['index']} | {e['true']} | {e['pred']} | {e['confidence']:.3f} |")
    lines += [
        "",
        "## Training config",
        "",
        "```json",
        json.dumps(record.get("config", {}), indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)
