"""Classification figures from predictions, in numpy: confusion matrix, per-class P/R/F1, ECE."""

from __future__ import annotations

import numpy as np


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, n_classes: int) -> np.ndarray:
    """(true, predicted) counts, shape (n_classes, n_classes)."""
    return np.bincount(
        n_classes * np.asarray(labels, dtype=np.int64) + np.asarray(preds, dtype=np.int64),
        minlength=n_classes * n_classes,
    ).reshape(n_classes, n_classes)


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class; 0 where undefined (no predictions / no support)."""
    tp = np.diag(cm).astype(float)
    predicted = cm.sum(0).astype(float)
    support = cm.sum(1).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(int)}


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, bins: int = 15
) -> tuple[float, list[dict]]:
    """ECE over equal-width confidence bins, and the bins (for a reliability table)."""
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece, table = 0.0, []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (conf > lo) & (conf <= hi)
        if not mask.any():
            continue
        acc, avg_conf, frac = correct[mask].mean(), conf[mask].mean(), mask.mean()
        ece += frac * abs(acc - avg_conf)
        table.append(
            {
                "lo": float(lo),
                "hi": float(hi),
                "count": int(mask.sum()),
                "accuracy": float(acc),
                "confidence": float(avg_conf),
            }
        )
    return float(ece), table


def confidently_wrong(probs: np.ndarray, labels: np.ndarray, k: int = 25) -> np.ndarray:
    """Indices of the ``k`` wrong predictions with the highest confidence, most confident first."""
    preds = probs.argmax(1)
    wrong = np.flatnonzero(preds != labels)
    order = np.argsort(-probs[wrong, preds[wrong]], kind="stable")
    return wrong[order[:k]]
