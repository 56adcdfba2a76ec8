"""``fmnist train --tensorboard``: the run's epochs as TensorBoard event files in ``RUN_DIR/tensorboard``.

The events are a view of ``metrics.jsonl``, not a second record: when the writer opens (at the first epoch
this invocation trains, or at the end of a resumed run that had nothing left to train) it purges every
earlier event from step 1 on (``purge_step=1``) and writes metrics.jsonl's rows again. A resumed run
therefore shows each epoch once, also when it was killed between its checkpoint and its events. Steps are
epochs. At the end: the confusion matrix of the best model on the validation split, as an image and as a
table (text). Only rank 0 writes, and only into a run folder.

``tensorboard`` is an optional package (``pip install "fmnist[tensorboard]"``): it is imported here only
when the flag is on, and :func:`require_tensorboard` turns its absence into one line before training.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from fmnist.errors import ConfigError
from fmnist.fsio import read_jsonl
from fmnist.train.run_folder import METRICS_FILE

BOARD_DIR = "tensorboard"
INSTALL = 'pip install "fmnist[tensorboard]"'
# metrics.jsonl key -> TensorBoard tag
SCALARS = {
    "train_loss": "train/loss",
    "train_acc": "train/accuracy",
    "val_loss": "val/loss",
    "val_acc": "val/accuracy",
    "lr": "train/lr",
    "images_per_s": "train/images_per_s",
}
CONFUSION_TAG = "val/confusion_matrix"

EpochHook = Callable[[int, nn.Module, dict], None]


def require_tensorboard() -> type:
    """torch's ``SummaryWriter``; a one-line ConfigError naming the install command when it cannot load."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            f"--tensorboard needs the tensorboard package (>= 2.14), which is not installed: {INSTALL}"
        ) from None
    return SummaryWriter


class TensorBoardLog:
    """The event writer of one invocation of ``train``; opened at its first use, closed by :meth:`close`."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._writer: Any = None
        self._logged = 0  # the last epoch written

    @classmethod
    def when(cls, cfg: Any, run_dir: Path | None, is_main: bool) -> TensorBoardLog | None:
        """A log for ``run_dir`` when ``cfg.tensorboard`` is on, there is a run folder and this is rank 0."""
        return cls(run_dir) if cfg.tensorboard and run_dir is not None and is_main else None

    def _open(self) -> Any:
        if self._writer is None:
            writer_class = require_tensorboard()
            self._writer = writer_class(str(self.run_dir / BOARD_DIR), purge_step=1)
            for row in read_jsonl(
                self.run_dir / METRICS_FILE
            ):  # the epochs kept (on resume: to the checkpoint)
                self._scalars(row)
        return self._writer

    def _scalars(self, row: dict) -> None:
        epoch = row.get("epoch")
        if not isinstance(epoch, int) or epoch <= self._logged:
            return
        for key, tag in SCALARS.items():
            if isinstance(row.get(key), int | float):
                self._writer.add_scalar(tag, row[key], epoch)
        self._logged = epoch

    def epoch_end(self, epoch: int, model: nn.Module, row: dict) -> None:
        """``fit``'s ``on_epoch_end``: this epoch's scalars (metrics.jsonl already holds its row)."""
        self._open()
        self._scalars(row)
        self._writer.flush()  # a TensorBoard watching the run sees each epoch as it ends

    def chain(self, hook: EpochHook | None) -> EpochHook:
        """An ``on_epoch_end`` that logs the epoch, then calls ``hook`` (the caller's own, if any)."""

        def both(epoch: int, model: nn.Module, row: dict) -> None:
            self.epoch_end(epoch, model, row)
            if hook is not None:
                hook(epoch, model, row)

        return both

    def confusion(self, model: nn.Module, data: Any, cfg: Any, best_epoch: int) -> np.ndarray | None:
        """The best model's confusion matrix on the validation split, at step ``best_epoch``, as an image
        and a table; returns it (None without a validation split)."""
        writer = self._open()
        if len(data.val_y) == 0:
            return None
        from fmnist.evaluate.metrics import confusion_matrix
        from fmnist.models.inference import logits_of

        logits = logits_of(
            model, data.val_x, data.mean, data.std, cfg.eval_batch_size, channels_last=cfg.channels_last
        )
        labels = data.val_y.cpu().numpy()
        cm = confusion_matrix(labels, logits.argmax(1).cpu().numpy(), len(data.classes))
        classes = list(data.classes)
        writer.add_text(CONFUSION_TAG, confusion_table(cm, classes), best_epoch)
        title = f"validation, best epoch {best_epoch}: accuracy {np.trace(cm) / max(cm.sum(), 1):.4f}"
        writer.add_image(CONFUSION_TAG, confusion_image(cm, classes, title), best_epoch, dataformats="HWC")
        writer.flush()
        return cm

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def confusion_table(cm: np.ndarray, classes: list[str]) -> str:
    """A markdown table (TensorBoard's text tab renders it): rows true, columns predicted."""
    lines = ["| true \\ predicted | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
    lines += [
        f"| {name} | " + " | ".join(str(v) for v in row) + " |" for name, row in zip(classes, cm, strict=True)
    ]
    return "\n".join(lines)


def confusion_image(cm: np.ndarray, classes: list[str], title: str) -> np.ndarray:
    """The heat map ``fmnist evaluate`` draws (:func:`fmnist.evaluate.pictures.confusion_png`), as RGB uint8."""
    from PIL import Image

    from fmnist.evaluate.pictures import confusion_png

    with tempfile.TemporaryDirectory(prefix="fmnist-tb-") as tmp:
        path = confusion_png(cm, classes, Path(tmp) / "confusion.png", title)
        with Image.open(path) as picture:
            return np.asarray(picture.convert("RGB"))
