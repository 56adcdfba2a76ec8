"""Calibrated probabilities and "none of these": a temperature and an abstain threshold, saved with the model.

Training with label smoothing leaves the network under-confident (a plainly visible jacket at 28%).
Temperature scaling divides the logits by one number T, fitted on the validation split by minimising
the negative log-likelihood: the ranking, so the accuracy, is unchanged; the probabilities mean what
they say (ECE on the test set, :func:`fmnist.evaluate.metrics.expected_calibration_error`).

The abstain rule: when the abstain score is under ``abstain_threshold`` the answer is "not one of the
ten classes?" (the top guesses are still shown). The score is the negative free energy of the logits,
``logsumexp(z)`` (Liu et al. 2020, "Energy-based out-of-distribution detection"), less the median
energy of the validation images given the same top class (``class_energy``): each class has its own
typical energy (a Trouser is called with far more certainty than a Shirt), and a hat that lands on Bag
must be compared with bags, not with trousers. On ../shared/photos plain energy told garments from hats,
shorts and skirts better than the calibrated top probability (AUROC 0.727 against 0.677 for the photo
recipe), and the class's median lifted it again (0.725 -> 0.772 for that model; benchmarks/NOTES.md).
``energy`` and ``max_probability`` are kept as the other choices. The threshold is chosen on validation data: without photos, the score
under which the validation images are wrong more often than right; with ``fmnist calibrate RUN
--photos DIR``, the one that best separates the photo set's garments from its none-of-the-ten photos
(balanced accuracy).

Both live in ``calibration.json`` beside ``model.pt`` (model.pt is never rewritten), with the model's
digest, so a calibration never applies to another model. numpy only: the ONNX path reads it too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.errors import FmnistError
from fmnist.fsio import write_json

CALIBRATION_FILE = "calibration.json"
FORMAT = "fmnist-calibration/1"
T_RANGE = (0.05, 20.0)  # temperatures outside this are a broken fit, not a calibration
MAX_FILE_BYTES = 1 << 20
MAX_CLASSES = 1000  # more class offsets than this is not a calibration of a Fashion-MNIST model


@dataclasses.dataclass(frozen=True)
class Calibration:
    """A temperature for the logits and an abstain threshold on a score of the (raw) logits."""

    temperature: float = 1.0
    abstain_threshold: float = -math.inf  # -inf: never abstain
    abstain_score: str = "energy"  # class_energy | energy | max_probability (see ABSTAIN_SCORES)
    model_sha256: str = ""
    class_offsets: tuple[float, ...] = ()  # class_energy: each class's median validation energy
    chosen_on: dict[str, Any] = dataclasses.field(default_factory=dict)  # what each value was fitted on

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Softmax of logits / temperature, in float64 for the sums, returned as float32."""
        return softmax(np.asarray(logits, dtype=np.float64) / self.temperature).astype(np.float32)

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """(n,) abstain scores of raw logits (n, classes): higher means surer it is one of the classes."""
        return ABSTAIN_SCORES[self.abstain_score](np.asarray(logits, dtype=np.float64), self)

    def abstains(self, logits: np.ndarray) -> np.ndarray:
        """(n,) bool: the score of these raw logits is under the threshold."""
        return self.scores(logits) < self.abstain_threshold

    def abstain_rule(self) -> str:
        """The abstain rule in words, for what the commands print."""
        if not math.isfinite(self.abstain_threshold):
            return "never abstains"
        return f"abstain when {self.abstain_score} < {self.abstain_threshold:.3f}"

    def to_dict(self) -> dict[str, Any]:
        data = {"format": FORMAT, **dataclasses.asdict(self)}
        data["class_offsets"] = list(self.class_offsets)
        if not math.isfinite(self.abstain_threshold):
            data["abstain_threshold"] = None  # JSON has no infinity: null means never abstain
        return data


def energy(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """logsumexp over the classes of the raw logits: the negative free energy (T = 1, as in Liu et al.)."""
    top = logits.max(axis=1)
    return top + np.log(np.exp(logits - top[:, None]).sum(axis=1))


def max_probability(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """The calibrated top probability."""
    return softmax(logits / temperature).max(axis=1)


def class_energy(logits: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The energy less ``offsets[c]``, c the top class: how sure the model is, against what is usual for c."""
    offsets = np.asarray(offsets, dtype=np.float64)
    if offsets.shape != (logits.shape[1],):
        raise FmnistError(
            f"the calibration holds {offsets.size} class offsets for a model of {logits.shape[1]} classes"
        )
    return energy(logits) - offsets[logits.argmax(axis=1)]


def class_medians(scores: np.ndarray, predicted: np.ndarray, classes: int) -> tuple[float, ...]:
    """The median score of the images predicted as each class (the overall median for a class never
    predicted): the offsets of :func:`class_energy`."""
    overall = float(np.median(scores)) if len(scores) else 0.0
    return tuple(
        float(np.median(scores[predicted == c])) if (predicted == c).any() else overall
        for c in range(classes)
    )


ABSTAIN_SCORES = {
    "class_energy": lambda z, cal: class_energy(z, cal.class_offsets),
    "energy": lambda z, cal: energy(z),
    "max_probability": lambda z, cal: max_probability(z, cal.temperature),
}
IDENTITY = Calibration()


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of ``labels`` under softmax(logits / temperature)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in T_RANGE minimising the NLL (golden-section search on log T: the NLL is unimodal in it)."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        raise FmnistError("cannot fit a temperature without validation images (--val-size 0)")
    lo, hi = math.log(T_RANGE[0]), math.log(T_RANGE[1])
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(logits, labels, math.exp(a)), nll(logits, labels, math.exp(b))
    while hi - lo > 1e-4:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(logits, labels, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(logits, labels, math.exp(b))
    return float(math.exp((lo + hi) / 2))


def threshold_wrong_over_right(scores: np.ndarray, correct: np.ndarray, bins: int = 50) -> float:
    """The score under which the predictions are mostly wrong: the top of the highest bin (of equal
    counts, by score) whose answers are right less than half the time; -inf when no bin is."""
    order = np.argsort(scores, kind="stable")
    threshold = -math.inf
    for chunk in np.array_split(order, min(bins, len(order))):
        if len(chunk) and correct[chunk].mean() < 0.5:
            threshold = float(scores[chunk].max())
    return threshold


def threshold_separating(kept: np.ndarray, refused: np.ndarray) -> tuple[float, float]:
    """(threshold, balanced accuracy): the cut on a score that best keeps ``kept`` (score >= t) and
    abstains on ``refused`` (score < t); ties go to the lower threshold."""
    kept, refused = np.sort(np.asarray(kept, float)), np.sort(np.asarray(refused, float))
    if len(kept) == 0 or len(refused) == 0:
        raise FmnistError("choosing an abstain threshold needs both in-class and none-of-the-ten photos")
    best = (-math.inf, 0.5)  # never abstaining: every garment kept, every other picture not
    for t in np.unique(np.concatenate([kept, refused])):
        kept_rate = 1 - np.searchsorted(kept, t, side="left") / len(kept)
        refused_rate = np.searchsorted(refused, t, side="left") / len(refused)
        score = (kept_rate + refused_rate) / 2
        if score > best[1] + 1e-12:
            best = (float(t), float(score))
    return best


def calibration_path(model_path: str | os.PathLike) -> Path:
    """``calibration.json`` beside the model file (a run folder means its model.pt)."""
    path = Path(model_path)
    return (path if path.is_dir() else path.parent) / CALIBRATION_FILE


def write_calibration(model_path: str | os.PathLike, calibration: Calibration) -> Path:
    """Write ``calibration.json`` beside the model, atomically."""
    path = calibration_path(model_path)
    write_json(path, calibration.to_dict())
    return path


def _number(data: dict, key: str, lo: float, hi: float, where: Path) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise FmnistError(f"{where}: not a usable calibration ({key} must be a number in [{lo}, {hi}])")
    return float(value)


def _threshold(data: dict, score: str, where: Path) -> float:
    if data.get("abstain_threshold") is None:
        return -math.inf
    if score == "max_probability":
        return _number(data, "abstain_threshold", 0.0, 1.0, where)
    return _number(data, "abstain_threshold", -1e6, 1e6, where)


def calibration_from(data: dict, where: str | os.PathLike) -> Calibration:
    """A :class:`Calibration` from its JSON fields (calibration.json, or an ONNX export's metadata), checked."""
    where = Path(where)
    score = data.get("abstain_score") or "energy"
    if score not in ABSTAIN_SCORES:
        raise FmnistError(
            f"{where}: not a usable calibration (abstain_score must be one of {', '.join(ABSTAIN_SCORES)})"
        )
    chosen_on = data.get("chosen_on")
    offsets = data.get("class_offsets") or []
    if not (
        isinstance(offsets, list)
        and len(offsets) <= MAX_CLASSES
        and all(not isinstance(v, bool) and isinstance(v, int | float) and abs(v) <= 1e6 for v in offsets)
    ):
        raise FmnistError(f"{where}: not a usable calibration (class_offsets must be a list of numbers)")
    if score == "class_energy" and not offsets:
        raise FmnistError(f"{where}: not a usable calibration (class_energy needs class_offsets)")
    return Calibration(
        temperature=_number(data, "temperature", *T_RANGE, where)
        if data.get("temperature") is not None
        else 1.0,
        abstain_threshold=_threshold(data, score, where),
        abstain_score=score,
        model_sha256=str(data.get("model_sha256") or ""),
        chosen_on=chosen_on if isinstance(chosen_on, dict) else {},
        class_offsets=tuple(float(v) for v in offsets),
    )


def read_calibration(model_path: str | os.PathLike, model_sha256: str) -> tuple[Calibration, str]:
    """The calibration saved beside the model, and a note for the user ("" when none is needed).

    No file: the identity (and a note). A file for another model (its digest differs): the identity
    and a note saying so. A damaged or foreign file: one-line :class:`FmnistError`.
    """
    path = calibration_path(model_path)
    if not path.is_file():
        return IDENTITY, f"note: {path.name} not found beside the model: probabilities are uncalibrated"
    if path.stat().st_size > MAX_FILE_BYTES:
        raise FmnistError(f"{path}: too large for a calibration file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FmnistError(f"{path}: not a readable calibration file ({type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise FmnistError(f"{path}: not an fmnist calibration file (no format {FORMAT!r})")
    calibration = calibration_from(data, path)
    if model_sha256 and calibration.model_sha256 != model_sha256:
        return IDENTITY, (
            f"note: {path} was fitted for another model.pt (digest differs): probabilities are "
            "uncalibrated; run `fmnist calibrate` again"
        )
    return calibration, ""


def fit_on_validation(logits: np.ndarray, labels: np.ndarray, model_sha256: str) -> Calibration:
    """Temperature by NLL on the validation split; class offsets (each top class's median energy) and the
    abstain threshold where the class energy's answers turn mostly wrong, on the same split."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    temperature = fit_temperature(logits, labels)
    predicted = logits.argmax(axis=1)
    offsets = class_medians(energy(logits), predicted, logits.shape[1])
    threshold = threshold_wrong_over_right(class_energy(logits, offsets), predicted == labels)
    return Calibration(
        temperature=temperature,
        abstain_threshold=threshold,
        abstain_score="class_energy",
        class_offsets=offsets,
        model_sha256=model_sha256,
        chosen_on={
            "temperature": f"validation split, {len(labels)} images: NLL {nll(logits, labels, 1.0):.4f} -> "
            f"{nll(logits, labels, temperature):.4f}",
            "class_offsets": "validation split: the median energy of the images given each top class",
            "abstain_threshold": "validation split: the class energy under which answers are mostly wrong",
        },
    )
