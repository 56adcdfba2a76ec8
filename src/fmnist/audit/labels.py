"""Likely label errors: out-of-sample class probabilities, then the images whose label they reject.

No image is ever scored by a model that trained on it. Two schemes:

- K-fold (the default): the images are split into K stratified folds; for each fold a small CNN is
  trained from scratch on the other K-1 folds (``fmnist.train.fit``, in memory) and scores the fold.
- A finished run (``--run``): its model scores only the test split, which ``fmnist train`` never reads.

Ranking: self-confidence, the probability the model gives the image's own label, lowest first
(Northcutt et al., "Confident Learning", JAIR 2021). An image is also *flagged* when it falls off
the diagonal of the confident joint: some other class j has p_j at or above class j's threshold
t_j (the mean p_j over images labelled j) and is the most probable such class.
"""

from __future__ import annotations

import io
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fmnist.errors import ConfigError, DataError
from fmnist.fsio import write_bytes
from fmnist.models.inference import load_model
from fmnist.models.scoring import accuracy
from fmnist.train import TrainingData, fit, make_config
from fmnist.train.device import resolve_device
from fmnist.train.loop import predict_logits

# The K-fold models: the CPU default net at half width, 3 epochs, no label smoothing (it would cap the
# confidence) and no random erasing. On 2 CPU cores, 5 folds over all 70,000 images take the time
# given in benchmarks/RESULTS.md ("Data audit"); each fold model reaches about 90% held-out accuracy.
AUDIT_TRAINING = {
    "model": "fastcnn",
    "width": 16,
    "epochs": 3,
    "batch_size": 128,
    "lr": 0.05,
    "val_size": 0,  # every non-held-out image trains; the held-out fold is the check
    "label_smoothing": 0.0,
    "erase_p": 0.0,
}


@dataclass(frozen=True)
class LabelScores:
    """Out-of-sample probabilities for a set of images and what they say about the given labels."""

    probs: np.ndarray  # (n, classes) float32, each row from a model that never trained on that image
    labels: np.ndarray  # (n,) the given labels
    fold: np.ndarray  # (n,) int, the fold that held the image out (-1: scored by a finished run)

    @property
    def self_confidence(self) -> np.ndarray:
        return self.probs[np.arange(len(self.labels)), self.labels]

    @property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @property
    def accuracy(self) -> float:
        return accuracy(self.probs, self.labels)

    def thresholds(self) -> np.ndarray:
        """Per-class confident-learning threshold t_j: mean p_j over the images labelled j."""
        n_classes = self.probs.shape[1]
        return np.array(
            [
                self.probs[self.labels == j, j].mean() if np.any(self.labels == j) else 1.0
                for j in range(n_classes)
            ]
        )

    def flagged(self) -> np.ndarray:
        """(n,) bool: off the diagonal of the confident joint (another class clears its threshold and wins)."""
        above = self.probs >= self.thresholds()[None, :]
        masked = np.where(above, self.probs, -1.0)
        best = masked.argmax(axis=1)
        return above.any(axis=1) & (best != self.labels)

    def ranking(self) -> np.ndarray:
        """Indices by self-confidence, lowest (most confidently rejected label) first; ties by index."""
        return np.lexsort((np.arange(len(self.labels)), self.self_confidence))


def stratified_folds(labels: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """(n,) fold id per image: each class shuffled and dealt round-robin, so every fold has every class."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        out[idx] = (np.arange(len(idx)) + offset) % folds
        offset += len(idx)  # rotate the start so small classes do not all favour fold 0
    return out


def audit_config(**overrides):
    """The K-fold training config: :data:`AUDIT_TRAINING` plus ``overrides`` (None values ignored)."""
    return make_config(**{**AUDIT_TRAINING, **{k: v for k, v in overrides.items() if v is not None}})


def cross_validated_scores(
    images: np.ndarray,
    labels: np.ndarray,
    classes: tuple[str, ...],
    folds: int = 5,
    cfg=None,
    log: Callable[[str], None] | None = print,
) -> LabelScores:
    """Train ``folds`` models, each on all folds but one, and score the held-out fold with it."""
    say = log or (lambda _msg: None)
    cfg = cfg if cfg is not None else audit_config()
    images, labels = np.asarray(images), np.asarray(labels).astype(np.int64)
    counts = np.bincount(labels, minlength=len(classes))
    if folds < 2:
        raise ConfigError(f"--folds must be at least 2, got {folds}")
    if counts.max(initial=0) < folds:
        raise ConfigError(
            f"--folds {folds} needs at least {folds} images in some class; largest class has {counts.max(initial=0)}"
        )
    device = resolve_device(cfg.device)
    fold = stratified_folds(labels, folds, cfg.seed)
    probs = np.zeros((len(labels), len(classes)), dtype=np.float32)
    for k in range(folds):
        t0 = time.perf_counter()
        held = np.flatnonzero(fold == k)
        rest = np.flatnonzero(fold != k)
        data = TrainingData.from_arrays(images[rest], labels[rest], tuple(classes), device, 0, cfg.seed)
        result = fit(cfg, data, None, log=None, progress_bar=False)
        x = (
            torch.from_numpy(np.ascontiguousarray(images[held])).unsqueeze(1).to(device)
        )  # (m, 1, 28, 28) uint8
        logits = predict_logits(
            result.model, x, data.mean, data.std, cfg.eval_batch_size, cfg.bf16, cfg.channels_last
        )
        probs[held] = torch.softmax(logits, dim=1).cpu().numpy()
        acc = accuracy(probs[held], labels[held])
        say(
            f"fold {k + 1}/{folds}: trained on {len(rest):,}, scored {len(held):,} held-out images, "
            f"accuracy {acc:.4f}, {time.perf_counter() - t0:.0f} s"
        )
    return LabelScores(probs, labels, fold)


def run_scores(run_dir, images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]) -> LabelScores:
    """Score ``images`` (which the run must not have trained on: the test split) with a finished run."""
    model = load_model(run_dir)
    if tuple(model.classes) != tuple(classes):
        raise ConfigError(
            f"{model.path}: trained on classes {model.classes[:3]}..., not those of the audited data"
        )
    probs = model.predict_proba(np.asarray(images)).astype(np.float32)
    return LabelScores(probs, np.asarray(labels).astype(np.int64), np.full(len(labels), -1))


OOF_FILE = "oof_probabilities.npz"


def save_probabilities(path: str | Path, scores: LabelScores, split: np.ndarray, index: np.ndarray) -> Path:
    """Write the out-of-sample probabilities (atomically), so later comparisons need no retraining.

    Arrays: ``probs`` float32 (n, classes), ``labels`` int64, ``index`` int64 (within its split),
    ``split`` str ("train"/"t10k"), ``fold`` int64. Plain arrays only: loads without pickle.
    """
    buf = io.BytesIO()
    np.savez(
        buf,
        probs=np.asarray(scores.probs, dtype=np.float32),
        labels=np.asarray(scores.labels, dtype=np.int64),
        index=np.asarray(index, dtype=np.int64),
        split=np.asarray(split, dtype=str),
        fold=np.asarray(scores.fold, dtype=np.int64),
    )
    write_bytes(path, buf.getvalue())
    return Path(path)


def load_probabilities(path: str | Path) -> tuple[LabelScores, np.ndarray, np.ndarray]:
    """(scores, split, index) from :func:`save_probabilities`; a missing or foreign file is a DataError."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("probs", "labels", "index", "split", "fold")}
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: not an audit probability file ({exc})") from None
    probs, labels = arrays["probs"], arrays["labels"]
    if probs.ndim != 2 or labels.shape != (len(probs),) or arrays["index"].shape != labels.shape:
        raise DataError(f"{path}: probs {probs.shape} and labels {labels.shape} do not match")
    return LabelScores(probs, labels, arrays["fold"]), arrays["split"], arrays["index"]


def cleanlab_issues(scores: LabelScores) -> np.ndarray | None:
    """cleanlab's label issues on the same probabilities, most suspect first; None if cleanlab is absent.

    ``find_label_issues`` with its default filter (prune by noise rate) and ranked by self-confidence,
    the audit's own ranking score, on one process (the audit runs on busy machines).
    """
    try:
        from cleanlab.filter import find_label_issues  # an extra: `pip install fmnist[audit]`
    except ModuleNotFoundError:
        return None
    return np.asarray(
        find_label_issues(scores.labels, scores.probs, return_indices_ranked_by="self_confidence", n_jobs=1),
        dtype=np.int64,
    )


def agreement(
    audit_flagged: np.ndarray, ranking: np.ndarray, issues: np.ndarray, tops: Sequence[int] = (100, 1000)
) -> dict:
    """How the audit's flags and ranking agree with another method's set of issues (indices)."""
    mine = set(np.flatnonzero(audit_flagged).tolist())
    theirs = set(np.asarray(issues).tolist())
    both, either = len(mine & theirs), len(mine | theirs)
    return {
        "cleanlab_flagged": len(theirs),
        "audit_flagged": len(mine),
        "overlap": both,
        "jaccard": round(both / either, 4) if either else 1.0,
        **{f"audit_top{k}_in_cleanlab": sum(int(i) in theirs for i in ranking[:k]) for k in tops},
    }


def cleanlab_agreement(scores: LabelScores, tops: Sequence[int] = (100, 1000)) -> dict | None:
    """:func:`agreement` between the audit and cleanlab on ``scores``; None when cleanlab is not installed."""
    with warnings.catch_warnings(record=True) as caught:  # into the JSON, not onto the user's terminal
        warnings.simplefilter("always")
        issues = cleanlab_issues(scores)
    if issues is None:
        return None
    import cleanlab

    return {
        "version": cleanlab.__version__,
        "method": "cleanlab.filter.find_label_issues(filter_by='prune_by_noise_rate', "
        "return_indices_ranked_by='self_confidence')",
        **agreement(scores.flagged(), scores.ranking(), issues, tops),
        "warnings": sorted({str(w.message) for w in caught}),
    }
