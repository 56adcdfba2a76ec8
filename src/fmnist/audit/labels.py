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

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from fmnist.errors import ConfigError
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
