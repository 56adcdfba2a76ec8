"""``fmnist bench photos``: how a model does on real photos, the pictures users actually bring.

Scores a model (run folder, model.pt or .onnx: the same :func:`fmnist.predict.predict.predict` as
``fmnist predict``) on a folder of labelled photos (:mod:`fmnist.data.photo_labels`). A label may be a
set of classes (footwear: any of the three is right) or "none of the ten". Reports top-1 and top-3 per
source label, how often the model abstains ("not one of the ten classes?"), and how well its abstain
score (and its top probability) separates the garments from the none-of-the-ten photos (AUROC: 0.5 is
chance, 1 perfect).
Writes photos.json, photos.md and a contact sheet of the 28x28 inputs with their predictions.

The photos are a validation set: settings are chosen on them, so their figures are not test figures.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from fmnist.data.photo_labels import LabelledPhoto, read_photo_labels
from fmnist.errors import FmnistError
from fmnist.fsio import write_bytes, write_text
from fmnist.predict.predict import Model, load, predict

RESULTS_JSON, RESULTS_MD, SHEET_PNG = "photos.json", "photos.md", "contact-sheet.png"
CELL, SCALE, COLUMNS = 28, 3, 24  # contact sheet: 28 px inputs drawn 3x, 24 per row


@dataclasses.dataclass(frozen=True)
class PhotoBenchConfig:
    """One run of the photo benchmark."""

    model: str  # run folder, model.pt or model.onnx
    folder: str  # the photos
    labels: str | None = None  # CSV (default FOLDER/labels.csv)
    out: str = "benchmarks/results/photos"
    backend: str = "auto"  # auto (by suffix), torch or onnx
    batch_size: int = 256


def auroc(positives: np.ndarray, negatives: np.ndarray) -> float | None:
    """Area under the ROC curve of a score that should be higher on ``positives`` (None: a side is empty)."""
    if len(positives) == 0 or len(negatives) == 0:
        return None
    from sklearn.metrics import roc_auc_score  # here: the bench extra

    truth = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    return float(roc_auc_score(truth, np.r_[positives, negatives]))


def _rate(flags: list[bool]) -> float | None:
    return float(np.mean(flags)) if flags else None


def score_photos(photos: list[LabelledPhoto], results: list[dict]) -> dict[str, Any]:
    """The figures: overall and per group (source label), from ``predict`` results in the same order."""
    groups: dict[str, dict[str, list]] = {}
    top_in, top_out, score_in, score_out, failed = [], [], [], [], []
    for photo, r in zip(photos, results, strict=True):
        if "error" in r:
            failed.append(r["error"])
            continue
        g = groups.setdefault(
            photo.group, {"top1": [], "top3": [], "abstain": [], "in_class": photo.in_class}
        )
        g["abstain"].append(bool(r.get("abstain", False)))
        if photo.in_class:
            guesses = [t["index"] for t in r["top"]]
            g["top1"].append(guesses[0] in photo.answers)
            g["top3"].append(any(i in photo.answers for i in guesses[:3]))
            top_in.append(r["probability"])
            score_in.append(r["abstain_score"])
        else:
            top_out.append(r["probability"])
            score_out.append(r["abstain_score"])
    per_group = {
        name: {
            "n": len(g["abstain"]),
            "in_class": g["in_class"],
            "top1": _rate(g["top1"]),
            "top3": _rate(g["top3"]),
            "abstain": _rate(g["abstain"]),
        }
        for name, g in sorted(groups.items(), key=lambda item: (not item[1]["in_class"], item[0]))
    }
    inside = [g for g in groups.values() if g["in_class"]]
    outside = [g for g in groups.values() if not g["in_class"]]
    return {
        "n_in_class": sum(len(g["top1"]) for g in inside),
        "n_none": sum(len(g["abstain"]) for g in outside),
        "top1": _rate([x for g in inside for x in g["top1"]]),
        "top3": _rate([x for g in inside for x in g["top3"]]),
        "abstain_in_class": _rate([x for g in inside for x in g["abstain"]]),
        "abstain_none": _rate([x for g in outside for x in g["abstain"]]),
        "auroc_top_probability": auroc(np.array(top_in), np.array(top_out)),
        "auroc_abstain_score": auroc(np.array(score_in), np.array(score_out)),
        "median_top_probability_in_class": float(np.median(top_in)) if top_in else None,
        "median_top_probability_none": float(np.median(top_out)) if top_out else None,
        "per_group": per_group,
        "failed": failed,
    }


def contact_sheet(photos: list[LabelledPhoto], results: list[dict], classes: list[str]) -> bytes:
    """PNG: each photo's 28x28 input, its top guess, green when right, red when wrong, grey for
    none-of-the-ten; "?" marks an abstention."""
    cell_w, cell_h = CELL * SCALE, CELL * SCALE + 12
    shown = [(p, r) for p, r in zip(photos, results, strict=True) if "processed" in r]
    rows = max(1, -(-len(shown) // COLUMNS))
    sheet = Image.new("RGB", (COLUMNS * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (photo, r) in enumerate(shown):
        x, y = (k % COLUMNS) * cell_w, (k // COLUMNS) * cell_h
        tile = Image.fromarray(r["processed"]).resize((CELL * SCALE, CELL * SCALE), Image.Resampling.NEAREST)
        sheet.paste(tile.convert("RGB"), (x, y))
        right = r["top"][0]["index"] in photo.answers
        colour = (120, 120, 120) if not photo.in_class else (0, 128, 0) if right else (200, 0, 0)
        label = ("? " if r.get("abstain") else "") + classes[r["top"][0]["index"]][:11]
        draw.text((x + 2, y + CELL * SCALE), label, fill=colour)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def format_markdown(summary: dict[str, Any]) -> str:
    """The per-group table and the headline figures, for photos.md and RESULTS.md."""
    lines = [
        f"Model `{summary['model']}` on `{summary['folder']}` ({summary['n_in_class']} photos of the ten "
        f"classes, {summary['n_none']} of none of them); calibration: {summary['calibration']}.",
        "",
        f"- top-1 **{_pct(summary['top1'])}**, top-3 {_pct(summary['top3'])} on the in-class photos",
        f"- AUROC garments vs none-of-the-ten: **{_auroc_text(summary['auroc_abstain_score'])}** by the abstain "
        f"score ({summary['abstain_score']}), {_auroc_text(summary['auroc_top_probability'])} by the top probability",
        f"- abstains on {_pct(summary['abstain_none'])} of the none-of-the-ten photos and "
        f"{_pct(summary['abstain_in_class'])} of the in-class ones",
        "",
        "| source label | photos | top-1 | top-3 | abstains |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, g in summary["per_group"].items():
        label = name if g["in_class"] else f"{name} (none of the ten)"
        lines.append(f"| {label} | {g['n']} | {_pct(g['top1'])} | {_pct(g['top3'])} | {_pct(g['abstain'])} |")
    if summary["failed"]:
        lines += [
            "",
            f"{len(summary['failed'])} photo(s) could not be read: " + "; ".join(summary["failed"][:5]),
        ]
    return "\n".join(lines) + "\n"


def _auroc_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def describe_calibration(model: Model) -> str:
    cal = model.calibration
    if cal.temperature == 1.0 and not math.isfinite(cal.abstain_threshold):
        return "none (run `fmnist calibrate`)"
    return f"temperature {cal.temperature:.3f}, {cal.abstain_rule()}"


def check_out(out: Path) -> None:
    """``--out`` is this benchmark's own folder: new, empty, or an earlier run's (it holds photos.json)."""
    if out.exists() and not out.is_dir():
        raise FmnistError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / RESULTS_JSON).is_file():
        raise FmnistError(f"--out {out}: a folder with other files in it; give a new or empty folder")


def run_photo_bench(cfg: PhotoBenchConfig, log=print) -> dict[str, Any]:
    """Score ``cfg.model`` on the photos; write photos.json, photos.md and the contact sheet into ``cfg.out``."""
    out = Path(cfg.out)
    check_out(out)
    model = load(cfg.model, backend=cfg.backend)
    photos = read_photo_labels(cfg.folder, model.classes, cfg.labels)
    if not photos:
        raise FmnistError(f"{cfg.labels or Path(cfg.folder) / 'labels.csv'}: lists no photos")
    t0 = time.perf_counter()
    results = predict(
        model,
        [p.path for p in photos],
        top_k=3,
        on_error="report",
        names=[str(p.path) for p in photos],
        batch_size=cfg.batch_size,
    )
    seconds = time.perf_counter() - t0
    summary = {
        "model": str(cfg.model),
        "folder": str(cfg.folder),
        "backend": "onnx" if model.path.suffix == ".onnx" else "torch",
        "calibration": describe_calibration(model),
        "abstain_score": model.calibration.abstain_score,
        **score_photos(photos, results),
        "seconds": seconds,
        "config": dataclasses.asdict(cfg),
    }
    write_bytes(out / SHEET_PNG, contact_sheet(photos, results, list(model.classes)))
    write_text(out / RESULTS_MD, format_markdown(summary))
    write_text(out / RESULTS_JSON, json.dumps(summary, indent=2) + "\n")
    log(format_markdown(summary))
    log(f"wrote {out / RESULTS_JSON}, {out / RESULTS_MD}, {out / SHEET_PNG} ({seconds:.1f} s)")
    return summary
