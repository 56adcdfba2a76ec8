"""``evaluate_run``: score a run folder's best model on the test set, write report.md and pictures.

This is the only place the test set is read for a training run: once, at the end. What it
measures is written beside the model (:mod:`fmnist.evaluate.record`); model.pt is only read.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from fmnist.data.loader import load_dataset
from fmnist.errors import FmnistError
from fmnist.evaluate.metrics import confidently_wrong, confusion_matrix, expected_calibration_error, per_class
from fmnist.evaluate.pictures import confusion_png, gallery_png
from fmnist.evaluate.record import ConfidentError, Evaluation, output_name
from fmnist.fsio import read_jsonl, write_json, write_text
from fmnist.models import load_model
from fmnist.models.calibration import softmax
from fmnist.models.record import model_digest
from fmnist.models.scoring import accuracy

REPORT_FILE = "report.md"
CONFUSION_FILE = "confusion.png"
ERRORS_FILE = "errors.png"
ERRORS_SHOWN = 25  # most confidently wrong images in errors.png and evaluation.json
OTHER_DATA = "the model was trained on data with another fingerprint"


def evaluate_arrays(probs: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """The scores of predicted probabilities ``probs`` (n, k) against ``labels``: the figure fields of
    :class:`Evaluation` (accuracy, n, per_class, macro_f1, confusion_matrix, ece, calibration_bins)."""
    preds = probs.argmax(1)
    cm = confusion_matrix(labels, preds, len(classes))
    pc = per_class(cm)
    ece, bins = expected_calibration_error(probs, labels)
    return {
        "accuracy": accuracy(probs, labels),
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


def confident_errors(probs: np.ndarray, labels: np.ndarray, classes: list[str]) -> list[ConfidentError]:
    """The :data:`ERRORS_SHOWN` wrong answers given with the highest confidence, most confident first."""
    return [
        {
            "index": int(i),
            "true": classes[labels[i]],
            "pred": classes[int(probs[i].argmax())],
            "confidence": float(probs[i].max()),
        }
        for i in confidently_wrong(probs, labels, ERRORS_SHOWN)
    ]


def evaluate_run(
    run_dir: str | Path,
    data_dir: str | None = None,
    device: str = "cpu",
    batch_size: int = 1024,
    flip_tta: bool = False,
) -> Evaluation:
    """Score ``run_dir/model.pt`` on its data set's test split; write what was measured beside it.

    Writes report.md, confusion.png, errors.png and, last (a sweep takes it as "finished"),
    evaluation.json. With ``flip_tta`` each image is scored with its mirror too and the files are
    ``evaluation-flip-tta.json``, ``report-flip-tta.md``, ...: the plain evaluation, whose accuracy
    predict and serve report, is left alone. model.pt is never rewritten.
    """
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
    logits = loaded.logits(images, batch_size, flip_tta).numpy()
    probs = loaded.calibration.probabilities(logits)  # calibrated: what predict and serve show
    seconds = time.perf_counter() - t0
    trained_on = record.get("data_fingerprint")
    evaluation = Evaluation(
        **evaluate_arrays(probs, labels, loaded.classes),
        most_confident_errors=confident_errors(probs, labels, loaded.classes),
        run_dir=str(run_dir),
        model=record["arch"],
        arch_kwargs=record["arch_kwargs"],
        epoch=record["epoch"],
        val_acc=record["metrics"].get("val_acc"),
        dataset=ds.name,
        data_fingerprint=ds.fingerprint,
        trained_on_fingerprint=trained_on,
        model_sha256=model_digest(loaded.path),
        inference_images_per_s=len(labels) / max(seconds, 1e-9),
        train_time_s=_train_time(run_dir),
        tta="flip" if flip_tta else None,
        temperature=loaded.calibration.temperature,
        ece_uncalibrated=expected_calibration_error(softmax(logits.astype(np.float64)), labels)[0],
        warning=None if trained_on in (None, ds.fingerprint) else OTHER_DATA,
    )
    write_evaluation(evaluation, images, ds.spec.title, record.get("config", {}))
    return evaluation


def _train_time(run_dir: Path) -> float | None:
    rows = read_jsonl(run_dir / "metrics.jsonl")
    return rows[-1].get("cum_train_time_s") if rows else None


def write_evaluation(e: Evaluation, images: np.ndarray, dataset_title: str, config: dict) -> None:
    """The pictures, report.md, then evaluation.json, into ``e.run_dir`` (TTA ones with their suffix)."""
    run_dir = Path(e.run_dir)
    title = f"{e.model} on {dataset_title} test: accuracy {e.accuracy:.4f}"
    confusion_png(
        np.array(e.confusion_matrix), list(e.per_class), run_dir / output_name(CONFUSION_FILE, e.tta), title
    )
    wrong = e.most_confident_errors
    captions = [f"#{w['index']} true {w['true']}\npred {w['pred']} {w['confidence']:.2f}" for w in wrong]
    gallery_png(
        images[[w["index"] for w in wrong]],
        captions,
        run_dir / output_name(ERRORS_FILE, e.tta),
        "Most confidently wrong test images",
    )
    write_text(run_dir / output_name(REPORT_FILE, e.tta), render_report(e, config))
    write_json(run_dir / e.file_name, e.to_dict())


def _table(header: list[str], align: str, rows: list[list]) -> str:
    """A Markdown table; ``align`` has one letter per column: l (left) or r (right)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "".join("---|" if a == "l" else "---:|" for a in align)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def render_report(e: Evaluation, config: dict) -> str:
    """report.md: readable on its own, with the training config and the pictures beside it."""
    selected = (
        f"- Best epoch {e.epoch} chosen by validation accuracy {e.val_acc:.4f} "
        "(validation split carved from training data)"
        if e.val_acc is not None and e.val_acc == e.val_acc  # NaN: no validation split
        else f"- Epoch {e.epoch}"
    )
    summary = [
        f"- **Test accuracy: {e.accuracy:.4f}** on {e.n:,} images (macro F1 {e.macro_f1:.4f})"
        + (" with flip test-time augmentation (each image and its mirror)" if e.tta else ""),
        f"- Expected calibration error (15 bins): {e.ece:.4f}",
        selected,
        f"- Training time: {e.train_time_s:.1f} s" if e.train_time_s else "- Training time: unknown",
        f"- Data fingerprint: `{e.data_fingerprint}` (trained on `{e.trained_on_fingerprint}`)",
        f"- Inference: {e.inference_images_per_s:,.0f} images/s",
    ]
    per_class_rows = [
        [name, f"{pc['precision']:.4f}", f"{pc['recall']:.4f}", f"{pc['f1']:.4f}", pc["support"]]
        for name, pc in e.per_class.items()
    ]
    classes = list(e.per_class)
    error_rows = [
        [w["index"], w["true"], w["pred"], f"{w['confidence']:.3f}"] for w in e.most_confident_errors[:10]
    ]
    sections = [
        f"# Evaluation: {e.model} on {e.dataset} test set",
        "\n".join(summary),
        "## Per class",
        _table(["class", "precision", "recall", "F1", "support"], "lrrrr", per_class_rows),
        "## Confusion matrix (rows: true, columns: predicted)",
        f"![confusion]({output_name(CONFUSION_FILE, e.tta)})",
        _table(
            ["true \\ pred", *(c[:8] for c in classes)],
            "l" + "r" * len(classes),
            [[name, *row] for name, row in zip(classes, e.confusion_matrix, strict=True)],
        ),
        "## Most confidently wrong test images",
        f"![errors]({output_name(ERRORS_FILE, e.tta)})",
        _table(["index", "true", "predicted", "confidence"], "rllr", error_rows),
        "## Training config",
        "```json\n" + json.dumps(config, indent=2) + "\n```",
    ]
    return "\n\n".join(sections) + "\n"
