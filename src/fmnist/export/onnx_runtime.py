"""Run an ONNX export with onnxruntime alone: numpy + onnxruntime, never torch.

:class:`OnnxModel` offers what prediction and the web service use from the torch model
(``classes``, ``record``, ``predict_proba``), so both backends go through the same photo
preprocessing (:mod:`fmnist.predict.preprocess_photo`) and the same code after it; images are
normalised by :func:`fmnist.models.inputs.preprocess_numpy`, the numpy twin of the torch path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from fmnist.errors import FmnistError
from fmnist.models.calibration import calibration_from, softmax
from fmnist.models.inputs import preprocess_numpy
from fmnist.models.record import RecordFields

FORMAT = "fmnist-onnx/1"  # the metadata tag of an fmnist ONNX export (fmnist.export.exporters writes it)
MODEL_FILE = "model.onnx"


def _json(value: str, default):
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return default


class OnnxModel(RecordFields):
    """An ONNX export loaded once into an onnxruntime session (CPU unless told otherwise)."""

    def __init__(
        self,
        path: str | os.PathLike,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
        intra_op_threads: int = 0,
    ) -> None:
        import onnxruntime as ort  # here: the export extra; predict imports this module without it

        path = Path(path)
        if path.is_dir():
            path = path / MODEL_FILE
        if not path.is_file():
            raise FmnistError(
                f"{path}: no such ONNX file (make one with `fmnist export RUN_DIR --format onnx`)"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads  # 0: onnxruntime's choice (one per core)
        options.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(str(path), options, providers=list(providers))
        except Exception as exc:  # InvalidProtobuf, Fail, NoSuchFile, ...
            raise FmnistError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("fmnist_format") != FORMAT:
            raise FmnistError(
                f"{path}: an ONNX model without fmnist metadata; export it with `fmnist export RUN_DIR`"
            )
        self.path = path
        self.input_name = self.session.get_inputs()[0].name
        self.record = {
            "classes": _json(meta.get("classes"), []),
            "mean": float(meta["mean"]),
            "std": float(meta["std"]),
            "input_size": _json(meta.get("input_size"), [1, 28, 28]),
            "arch": meta.get("arch", ""),
            "arch_kwargs": _json(meta.get("arch_kwargs"), {}),
            "dataset": meta.get("dataset", ""),
            "data_fingerprint": meta.get("data_fingerprint", ""),
            "epoch": _json(meta.get("epoch"), None),
            "metrics": _json(meta.get("metrics"), {}),
            "exporter": meta.get("exporter", ""),
            "source_sha256": meta.get("source_sha256", ""),
        }
        # The temperature is inside the graph (fmnist.export.exporters.Calibrated): logits() multiplies it
        # back out, so both backends hand predict the raw logits and the same calibration.
        self.calibration = calibration_from(
            {k: _json(meta.get(k), None) for k in ("temperature", "abstain_threshold", "class_offsets")}
            | {"abstain_score": meta.get("abstain_score", "energy")},
            path,
        )

    def logits(self, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Raw logits (n, classes) for uint8 images, computed in batches (the graph's over its temperature)."""
        return self.calibrated_logits(images, batch_size) * self.calibration.temperature

    def calibrated_logits(self, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """What the graph computes: logits over the temperature."""
        out = [
            self.session.run(
                None, {self.input_name: preprocess_numpy(images[i : i + batch_size], self.mean, self.std)}
            )[0]
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(out) if out else np.empty((0, len(self.classes)), dtype=np.float32)

    def predict_logits(self, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        return self.logits(images, batch_size)

    def predict_proba(self, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        return softmax(self.calibrated_logits(images, batch_size).astype(np.float64)).astype(np.float32)
