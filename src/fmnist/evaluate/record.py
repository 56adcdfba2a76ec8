"""The evaluation record: what ``fmnist evaluate`` measured, typed, and the file beside the model it lives in.

Evaluation writes what it measured beside the model and never rewrites ``model.pt``:
``evaluation.json`` holds the plain score, the one predict and serve report; a flip-TTA score goes to
``evaluation-flip-tta.json`` (and its report and pictures get the same suffix), so neither overwrites
the other. The JSON keys are the field names below: one spelling for each figure.

No torch here: the web service reads this with the onnx backend too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypedDict

from fmnist.errors import FmnistError

EVALUATION_FILE = "evaluation.json"
MAX_EVALUATION_BYTES = 4 * 2**20  # a real one is ~10 kB; more is not an evaluation
NOT_EVALUATED = "not evaluated"


class ClassFigures(TypedDict):
    precision: float
    recall: float
    f1: float
    support: int  # test images of this class


class CalibrationBin(TypedDict):
    lo: float  # confidence range (lo, hi]
    hi: float
    count: int
    accuracy: float
    confidence: float  # mean top-class probability in the bin


class ConfidentError(TypedDict):
    index: int  # position in the test split
    true: str
    pred: str
    confidence: float


@dataclass(frozen=True, kw_only=True)
class Evaluation:
    """One scoring of a model on its data set's test split (``evaluate_run``'s result)."""

    # --- the figures, on the whole test split
    accuracy: float  # fraction of images whose most probable class is the label, 0..1
    n: int  # test images scored
    per_class: dict[str, ClassFigures]  # class name -> precision, recall, F1, support
    macro_f1: float  # unweighted mean of the per-class F1
    confusion_matrix: list[list[int]]  # counts, [true class][predicted class]
    ece: float  # expected calibration error over 15 equal-width confidence bins, 0..1
    calibration_bins: list[CalibrationBin]  # the reliability table behind ece (non-empty bins only)
    most_confident_errors: list[ConfidentError]  # the 25 wrong answers given with most confidence
    # --- what was scored
    run_dir: str
    model: str  # architecture name, e.g. "fastcnn"
    arch_kwargs: dict[str, Any]
    epoch: int  # the training epoch whose weights model.pt holds
    val_acc: float | None  # that epoch's validation accuracy, as the trainer recorded it
    dataset: str
    data_fingerprint: str  # of the data scored here
    trained_on_fingerprint: str | None  # of the data the model was trained on (from model.pt)
    model_sha256: str | None = None  # model_digest of the model.pt scored (None: an older file)
    # --- how
    inference_images_per_s: float  # test images per second of wall clock, inference only
    train_time_s: float | None  # training seconds, from metrics.jsonl (None: not recorded)
    tta: str | None  # None: each image once; "flip": each image scored with its mirror too
    warning: str | None = None  # e.g. the model was trained on other data
    temperature: float = 1.0  # the calibration applied to the probabilities scored (1: none)
    ece_uncalibrated: float | None = None  # ece of the plain softmax, before the temperature

    @property
    def file_name(self) -> str:
        return output_name(EVALUATION_FILE, self.tta)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of evaluation.json (``warning`` only when there is one, as before)."""
        data = asdict(self)
        if data["warning"] is None:
            del data["warning"]
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = "evaluation") -> Evaluation:
        """Read back :meth:`to_dict`; a missing field or a bad accuracy is one line naming ``where``.

        Unknown keys are ignored, so a newer fmnist's file still reads.
        """
        if not isinstance(data, Mapping):
            raise FmnistError(f"{where}: not an fmnist evaluation (a JSON object expected)")
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in data]
        if missing:
            raise FmnistError(
                f"{where}: not an fmnist evaluation (missing {', '.join(missing[:3])}"
                f"{', ...' if len(missing) > 3 else ''}); run `fmnist evaluate` again"
            )
        accuracy = data["accuracy"]
        if isinstance(accuracy, bool) or not isinstance(accuracy, int | float) or not 0 <= accuracy <= 1:
            raise FmnistError(f"{where}: accuracy must be a number from 0 to 1, got {accuracy!r}")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def output_name(name: str, tta: str | None) -> str:
    """``report.md`` -> ``report-flip-tta.md`` for a TTA evaluation: its files never replace the plain ones."""
    if not tta:
        return name
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}-{tta}-tta{dot}{suffix}"


def read_evaluation(run_dir: str | os.PathLike, tta: str | None = None) -> Evaluation | None:
    """The evaluation in ``run_dir`` (plain, or the ``tta`` one); None when there is none.

    A file that is there but unreadable, too big or not an evaluation is one line.
    """
    path = Path(run_dir) / output_name(EVALUATION_FILE, tta)
    if not path.is_file():
        return None
    try:
        if path.stat().st_size > MAX_EVALUATION_BYTES:
            raise FmnistError(f"{path}: too big for an evaluation (over {MAX_EVALUATION_BYTES // 2**20} MiB)")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FmnistError(
            f"{path}: not a readable evaluation ({type(exc).__name__}); run `fmnist evaluate` again"
        ) from None
    return Evaluation.from_dict(data, str(path))


def recorded_accuracy(model_file: str | os.PathLike, digest: str | None) -> tuple[float | None, str]:
    """The plain test accuracy ``fmnist evaluate`` wrote beside ``model_file``, and where it is from.

    ``digest`` is :func:`fmnist.models.record.model_digest` of the model.pt behind ``model_file`` (an export's
    ``source_sha256``). ``(None, "not evaluated ...")`` when there is no evaluation, when it scored
    another model.pt (retrained since), or when it cannot be read: a figure is never guessed.
    """
    run_dir = Path(model_file).parent
    try:
        found = read_evaluation(run_dir)
    except FmnistError as exc:
        return None, f"{NOT_EVALUATED} ({exc})"
    if found is None:
        return None, NOT_EVALUATED
    where = str(run_dir / EVALUATION_FILE)
    if found.tta:  # an older file: --tta used to replace evaluation.json
        return None, f"{NOT_EVALUATED} without TTA ({where} holds a {found.tta}-TTA score)"
    if digest and found.model_sha256 and found.model_sha256 != digest:
        return None, f"{NOT_EVALUATED} ({where} scored an earlier model.pt)"
    return found.accuracy, where


def _calibration_note(e: Evaluation) -> str:
    if e.temperature == 1.0 or e.ece_uncalibrated is None:
        return " (uncalibrated)"
    return f" at temperature {e.temperature:.3f} ({e.ece_uncalibrated:.4f} without)"


def format_evaluation(e: Evaluation) -> str:
    """The figures as ``fmnist evaluate`` and ``fmnist run`` print them."""
    lines = [
        f"test accuracy {e.accuracy:.4f}{' (flip TTA)' if e.tta else ''}  macro F1 {e.macro_f1:.4f}  "
        f"ECE {e.ece:.4f}{_calibration_note(e)}  (data fingerprint {e.data_fingerprint})"
    ]
    if e.warning:
        lines.append(f"warning: {e.warning} ({e.trained_on_fingerprint})")
    width = max(len(c) for c in e.per_class)
    lines.append(f"  {'class':<{width}}  precision  recall     F1")
    for name, pc in e.per_class.items():
        lines.append(f"  {name:<{width}}  {pc['precision']:9.4f}  {pc['recall']:6.4f}  {pc['f1']:.4f}")
    lines.append(f"report: {Path(e.run_dir) / output_name('report.md', e.tta)}")
    return "\n".join(lines)
