"""``audit``: duplicates, class balance, pixel statistics and likely label errors, written to a folder.

Files written (atomically) in ``out``: ``audit.json`` (every figure), ``audit.md`` (the summary),
``duplicates.csv`` (every exact and near-duplicate pair), ``duplicates_disagree.csv`` (those whose
labels differ), ``duplicates.png``, ``class_stats.csv``, ``class_means.png`` and, unless label
errors are off, ``label_errors.csv`` (every scored image, most suspect first), ``label_errors.png`` and
``oof_probabilities.npz`` (the out-of-sample probabilities, for later comparisons without retraining).
The label errors are also compared with cleanlab (when installed) and, on Fashion-MNIST, with the
mislabelled training images others have published (:mod:`fmnist.audit.references`).
"""

from __future__ import annotations

import csv
import io
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fmnist.audit.duplicates import NEAR_RMS, Pairs, exact_pairs, near_pairs
from fmnist.audit.labels import (
    OOF_FILE,
    LabelScores,
    audit_config,
    cleanlab_agreement,
    cross_validated_scores,
    run_scores,
    save_probabilities,
)
from fmnist.audit.markdown import format_markdown
from fmnist.audit.references import REFERENCE_DATASET, compare_with_references
from fmnist.audit.stats import class_balance, class_means, per_class_stats
from fmnist.evaluate.pictures import gallery_png
from fmnist.fsio import write_json, write_text

SPLITS = ("train", "t10k")  # the data layer's split names; t10k is the test split
SPLIT_PAIRS = ("train-train", "t10k-t10k", "train-t10k")
LADDER = (2.0, 4.0, 6.0, 8.0, 10.0, 12.0)  # grey levels at which pair counts are also reported
PAIRS_SHOWN = 15  # pairs in duplicates.png
ERRORS_SHOWN = 40  # images in label_errors.png


def _csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


class Pooled:
    """Train and test images in one array (train first), with the way back to (split, index)."""

    def __init__(self, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        self.n_train = len(splits["train"][1])
        self.images = np.concatenate([np.asarray(splits[s][0]) for s in SPLITS])
        self.labels = np.concatenate([np.asarray(splits[s][1]) for s in SPLITS]).astype(np.int64)

    def where(self, pooled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(split names, index within the split) for pooled indices."""
        pooled = np.asarray(pooled)
        is_train = pooled < self.n_train
        return np.where(is_train, "train", "t10k"), np.where(is_train, pooled, pooled - self.n_train)

    def split_pair(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """'train-train', 't10k-t10k' or 'train-t10k' for pairs i < j of pooled indices."""
        a, b = np.asarray(i) < self.n_train, np.asarray(j) < self.n_train
        return np.where(a & b, "train-train", np.where(~a & ~b, "t10k-t10k", "train-t10k"))


def pair_rows(pool: Pooled, pairs: Pairs, kind: str, classes: tuple[str, ...]) -> list[dict]:
    split_a, index_a = pool.where(pairs.i)
    split_b, index_b = pool.where(pairs.j)
    rows = []
    for k in range(len(pairs)):
        la, lb = int(pool.labels[pairs.i[k]]), int(pool.labels[pairs.j[k]])
        rows.append(
            {
                "index_a": int(index_a[k]),
                "split_a": str(split_a[k]),
                "index_b": int(index_b[k]),
                "split_b": str(split_b[k]),
                "label_a": la,
                "label_b": lb,
                "distance": round(float(pairs.distance[k]), 3),
                "kind": kind,
                "class_a": classes[la],
                "class_b": classes[lb],
            }
        )
    return rows


PAIR_COLUMNS = [
    "index_a",
    "split_a",
    "index_b",
    "split_b",
    "label_a",
    "label_b",
    "distance",
    "kind",
    "class_a",
    "class_b",
]


def duplicate_summary(pool: Pooled, exact: Pairs, near_all: Pairs, threshold: float) -> dict:
    """Counts of pairs (and of images in a pair) per split pair: exact, near (0 < rms <= threshold), the ladder."""
    out: dict = {"threshold_rms": threshold, "metric": "RMS pixel difference, grey levels 0-255"}
    near_mask = (near_all.distance <= threshold) & (near_all.distance > 0)
    for kind, pairs, mask in (("exact", exact, np.ones(len(exact), bool)), ("near", near_all, near_mask)):
        split_pair = pool.split_pair(pairs.i, pairs.j)
        disagree = pool.labels[pairs.i] != pool.labels[pairs.j]
        out[kind] = {}
        for key in SPLIT_PAIRS:
            m = mask & (split_pair == key)
            out[kind][key] = {
                "pairs": int(m.sum()),
                "images": len(np.union1d(pairs.i[m], pairs.j[m])),
                "labels_disagree": int((m & disagree).sum()),
            }
        # Leakage in one number: test images with a (near) copy in train. Pooled order puts test second.
        out[kind]["train-t10k"]["t10k_images"] = len(np.unique(pairs.j[mask & (split_pair == "train-t10k")]))
    split_pair = pool.split_pair(near_all.i, near_all.j)
    out["ladder"] = {
        f"{t:g}": {key: int(((near_all.distance <= t) & (split_pair == key)).sum()) for key in SPLIT_PAIRS}
        for t in sorted({*LADDER, threshold})
    }
    return out


def label_rows(
    pool_split: np.ndarray, pool_index: np.ndarray, scores: LabelScores, classes: tuple[str, ...]
) -> list[dict]:
    """Every scored image, most confidently rejected label first."""
    conf, pred, flagged = scores.self_confidence, scores.predicted, scores.flagged()
    rows = []
    for rank, k in enumerate(scores.ranking(), start=1):
        label, p = int(scores.labels[k]), int(pred[k])
        rows.append(
            {
                "rank": rank,
                "index": int(pool_index[k]),
                "split": str(pool_split[k]),
                "label": label,
                "class": classes[label],
                "p_label": round(float(conf[k]), 5),
                "predicted": p,
                "predicted_class": classes[p],
                "p_predicted": round(float(scores.probs[k, p]), 5),
                "flagged": int(flagged[k]),
                "fold": int(scores.fold[k]),
            }
        )
    return rows


LABEL_COLUMNS = [
    "rank",
    "index",
    "split",
    "label",
    "class",
    "p_label",
    "predicted",
    "predicted_class",
    "p_predicted",
    "flagged",
    "fold",
]


def label_summary(rows: list[dict], scores: LabelScores, scheme: str, seconds: float, top: int = 100) -> dict:
    conf = scores.self_confidence
    swaps = Counter(f"{r['class']} -> {r['predicted_class']}" for r in rows[:top])
    return {
        "scheme": scheme,
        "scored_images": len(rows),
        "out_of_sample_accuracy": scores.accuracy,
        "flagged_confident_learning": int(scores.flagged().sum()),
        "p_label_below": {f"{t:g}": int((conf < t).sum()) for t in (0.001, 0.01, 0.05, 0.1)},
        f"top{top}_given_to_predicted": dict(swaps.most_common(10)),
        f"top{top}_by_split": dict(Counter(r["split"] for r in rows[:top])),
        "seconds": round(seconds, 1),
    }


def pairs_png(pool: Pooled, rows: list[dict], path: Path, title: str) -> Path:
    images, captions = [], []
    for r in rows[:PAIRS_SHOWN]:
        for side in ("a", "b"):
            split, index = r[f"split_{side}"], r[f"index_{side}"]
            pooled = index if split == "train" else index + pool.n_train
            images.append(pool.images[pooled])
            extra = f" d={r['distance']:.1f}" if side == "b" else ""
            captions.append(f"{split} {index}{extra}\n{r[f'class_{side}']}")
    if not images:
        images, captions = [np.zeros((28, 28), np.uint8)], ["no pairs"]
    return gallery_png(np.stack(images), captions, path, title, columns=6)


def label_errors_png(pool: Pooled, rows: list[dict], path: Path, title: str) -> Path:
    shown = rows[:ERRORS_SHOWN]
    images = np.stack(
        [pool.images[r["index"] if r["split"] == "train" else r["index"] + pool.n_train] for r in shown]
    )
    captions = [
        f"{r['split']} {r['index']}: {r['class']} {r['p_label']:.3f}\nmodel: {r['predicted_class']} {r['p_predicted']:.2f}"
        for r in shown
    ]
    return gallery_png(images, captions, path, title, columns=8)


def audit_duplicates(
    pool: Pooled,
    classes: tuple[str, ...],
    out: Path,
    threshold: float,
    title: str,
    say: Callable[[str], None],
) -> dict:
    """Exact and near pairs: duplicates.csv, duplicates_disagree.csv, duplicates.png; returns the counts."""
    t0 = time.perf_counter()
    exact = exact_pairs(pool.images)
    near_all = near_pairs(
        pool.images, max(threshold, *LADDER)
    )  # the ladder's counts come from the same search
    dup = duplicate_summary(pool, exact, near_all, threshold)
    dup["seconds"] = round(time.perf_counter() - t0, 1)
    keep = (near_all.distance <= threshold) & (near_all.distance > 0)
    near = Pairs(near_all.i[keep], near_all.j[keep], near_all.distance[keep])
    rows = pair_rows(pool, exact, "exact", classes) + pair_rows(pool, near, "near", classes)
    disagree = [r for r in rows if r["label_a"] != r["label_b"]]
    write_text(out / "duplicates.csv", _csv(rows, PAIR_COLUMNS))
    write_text(out / "duplicates_disagree.csv", _csv(disagree, PAIR_COLUMNS))
    pairs_png(
        pool,
        disagree + [r for r in rows if r["label_a"] == r["label_b"]],
        out / "duplicates.png",
        f"{title}: closest pairs (RMS <= {threshold:g} grey levels), label disagreements first",
    )
    for kind in ("exact", "near"):
        counts = ", ".join(f"{k} {v['pairs']}" for k, v in dup[kind].items())
        say(f"{kind} duplicate pairs: {counts}" + (f" (RMS <= {threshold:g})" if kind == "near" else ""))
    say(f"pairs whose labels disagree: {len(disagree)}; {dup['seconds']:.0f} s")
    return dup


STAT_COLUMNS = [
    "split",
    "label",
    "class",
    "images",
    "mean_intensity",
    "std_of_image_means",
    "ink_fraction",
    "bright_fraction",
    "mean_height",
    "mean_width",
    "blank_images",
]


def audit_classes(
    splits: dict, classes: tuple[str, ...], out: Path, title: str, say: Callable[[str], None]
) -> dict:
    """Class balance and per-class pixel statistics: class_stats.csv, class_means.png."""
    balance = class_balance({s: splits[s][1] for s in SPLITS}, len(classes))
    stats = [{"split": s, **row} for s in SPLITS for row in per_class_stats(*splits[s], classes)]
    write_text(out / "class_stats.csv", _csv(stats, STAT_COLUMNS))
    gallery_png(
        class_means(*splits["train"], len(classes)),
        list(classes),
        out / "class_means.png",
        f"{title}: mean training image per class",
        columns=min(10, len(classes)),
    )
    say("images per class: " + ", ".join(f"{s} {min(balance[s])}..{max(balance[s])}" for s in SPLITS))
    return {"class_balance": balance, "class_stats": stats}


def audit_labels(
    pool: Pooled,
    splits: dict,
    classes: tuple[str, ...],
    out: Path,
    folds: int,
    run_dir: Path | None,
    cfg,
    title: str,
    say: Callable[[str], None],
    references: bool = False,
) -> dict:
    """Out-of-sample label scores: label_errors.csv (most suspect first), label_errors.png, the npz of
    probabilities; cleanlab's verdict on the same probabilities and (``references``) the published
    Fashion-MNIST label errors, compared with the ranking. Returns the summary."""
    t0 = time.perf_counter()
    if run_dir is not None:
        scores = run_scores(run_dir, *splits["t10k"], classes)
        split_of, index_of = np.full(len(scores.labels), "t10k"), np.arange(len(scores.labels))
        scheme = f"model of {run_dir} on the test split (never trained on it)"
    else:
        cfg = cfg if cfg is not None else audit_config()
        scores = cross_validated_scores(pool.images, pool.labels, classes, folds, cfg, log=say)
        split_of, index_of = pool.where(np.arange(len(pool.labels)))
        scheme = (
            f"{folds}-fold cross-validation over both splits (each image scored by a model not trained on it)"
        )
    ranked = label_rows(split_of, index_of, scores, classes)
    le = label_summary(ranked, scores, scheme, time.perf_counter() - t0)
    if run_dir is None:
        le["training"] = {
            k: getattr(cfg, k) for k in ("model", "width", "epochs", "batch_size", "lr", "seed", "threads")
        }
    write_text(out / "label_errors.csv", _csv(ranked, LABEL_COLUMNS))
    save_probabilities(out / OOF_FILE, scores, split_of, index_of)
    le["probabilities_file"] = OOF_FILE
    le["cleanlab"] = cleanlab_summary(scores, say)
    le["references"] = compare_with_references(ranked) if references and "train" in set(split_of) else None
    label_errors_png(
        pool,
        ranked,
        out / "label_errors.png",
        f"{title}: labels the model rejects most confidently (out-of-sample p of the given label)",
    )
    say(
        f"label errors: out-of-sample accuracy {le['out_of_sample_accuracy']:.4f}; "
        f"{le['flagged_confident_learning']} flagged (confident learning); "
        f"{le['p_label_below']['0.01']} with p(label) < 0.01"
    )
    for name, ref in (le["references"] or {}).items():
        if not ref["indices"]:
            continue  # a source not recorded (Table 7): said in audit.md
        say(
            f"published label errors ({name}): {ref['top100']} of {ref['scored']} scored in the top 100, "
            f"{ref['top1000']} in the top 1,000"
        )
    return le


def cleanlab_summary(scores: LabelScores, say: Callable[[str], None]) -> dict | None:
    """cleanlab's agreement with the audit; None (and a note) when cleanlab is not installed."""
    try:
        cl = cleanlab_agreement(scores)
    except Exception as exc:  # a third-party check must not throw away a finished audit
        say(f"cleanlab comparison failed: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"}
    if cl is None:
        say("cleanlab not installed: comparison skipped (pip install 'cleanlab>=2.6')")
        return None
    say(
        f"cleanlab: {cl['cleanlab_flagged']} issues, audit {cl['audit_flagged']} flagged, overlap "
        f"{cl['overlap']} (Jaccard {cl['jaccard']:.3f}); audit top 100 / 1,000 in cleanlab's set: "
        f"{cl['audit_top100_in_cleanlab']} / {cl['audit_top1000_in_cleanlab']}"
    )
    return cl


def audit(
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    classes: tuple[str, ...],
    out: Path,
    *,
    threshold: float = NEAR_RMS,
    label_errors: str = "cnn",
    folds: int = 5,
    run_dir: Path | None = None,
    cfg=None,
    title: str = "data set",
    log: Callable[[str], None] | None = print,
    references: bool | None = None,
) -> dict:
    """Audit ``splits`` (``{"train": (images, labels), "t10k": (...)}``), write the files, return the figures.

    ``label_errors="none"`` skips the label scores; ``run_dir`` scores the test split with that run's
    model instead of training ``folds`` models with ``cfg`` (default :data:`fmnist.audit.labels.AUDIT_TRAINING`).
    ``references`` compares the ranking with the published Fashion-MNIST label errors; None: when
    ``title`` names Fashion-MNIST (the indices mean nothing in another data set).
    """
    say = log or (lambda _msg: None)
    out = Path(out)
    pool = Pooled(splits)
    summary: dict = {"data": title, "images": {s: len(splits[s][1]) for s in SPLITS}}
    summary["duplicates"] = audit_duplicates(pool, classes, out, threshold, title, say)
    summary.update(audit_classes(splits, classes, out, title, say))
    if label_errors != "none":
        if references is None:
            references = title.startswith(REFERENCE_DATASET)
        summary["label_errors"] = audit_labels(
            pool, splits, classes, out, folds, run_dir, cfg, title, say, references
        )
    write_json(out / "audit.json", summary)
    write_text(out / "audit.md", format_markdown(summary, classes))
    say(f"wrote {out}/audit.md, audit.json, duplicates.csv, class_stats.csv and pictures")
    return summary
