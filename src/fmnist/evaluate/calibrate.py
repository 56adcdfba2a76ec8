"""``fmnist calibrate``: refit a model's temperature on its validation split and choose its abstain
threshold, on that split alone or with a folder of labelled photos (see :mod:`fmnist.models.calibration`).

Training already writes a calibration from the validation split; this command redoes it for an older run,
and with ``--photos`` chooses the threshold that best tells the photo set's garments from its
none-of-the-ten photos. The photos are a validation set: nothing is trained on them.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch

from fmnist.data.photo_labels import read_photo_labels
from fmnist.errors import FmnistError
from fmnist.models.calibration import Calibration, fit_on_validation, threshold_separating, write_calibration
from fmnist.models.inference import load_model, resolve_model_path
from fmnist.models.record import model_digest
from fmnist.predict.predict import predict
from fmnist.train.config import TrainConfig
from fmnist.train.data import load_training_data


def validation_split_of(record: dict, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The validation images and labels the model was selected on: its config's split, redrawn."""
    saved = record.get("config")
    if not isinstance(saved, dict):
        raise FmnistError("the model file holds no training config, so its validation split is unknown")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in saved.items() if k in names} | {"device": "cpu"}
    if data_dir is not None:
        values["data_dir"] = data_dir
    data = load_training_data(TrainConfig(**values), torch.device("cpu"))
    if len(data.val_y) == 0:
        raise FmnistError(
            "the model was trained without a validation split (--val-size 0): nothing to fit on"
        )
    return data.val_x.numpy()[:, 0], data.val_y.numpy()


def calibrate_model(
    model: str | os.PathLike,
    photos: str | os.PathLike | None = None,
    labels: str | os.PathLike | None = None,
    data_dir: str | None = None,
) -> tuple[Calibration, Path]:
    """Fit and write ``calibration.json`` beside the model; returns it and its path."""
    path = resolve_model_path(model)
    loaded = load_model(path)
    images, val_labels = validation_split_of(loaded.record, data_dir)
    calibration = fit_on_validation(loaded.logits(images).numpy(), val_labels, model_digest(path))
    if photos is not None:
        listed = read_photo_labels(photos, loaded.classes, labels)
        loaded.calibration = calibration
        results = predict(loaded, [p.path for p in listed], top_k=1, on_error="report")
        top = [
            (p.in_class, r["abstain_score"]) for p, r in zip(listed, results, strict=True) if "error" not in r
        ]
        threshold, balanced = threshold_separating(
            np.array([s for inside, s in top if inside]), np.array([s for inside, s in top if not inside])
        )
        calibration = dataclasses.replace(
            calibration,
            abstain_threshold=threshold,
            chosen_on=calibration.chosen_on
            | {
                "abstain_threshold": f"photos in {photos}: best balanced accuracy {balanced:.3f} keeping "
                f"{sum(i for i, _ in top)} in-class photos and abstaining on {sum(not i for i, _ in top)} "
                "none-of-the-ten ones"
            },
        )
    return calibration, write_calibration(path, calibration)
