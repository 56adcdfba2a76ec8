"""``fmnist evaluate``: figures checked against an independent eval-mode forward pass and scikit-learn; files.

The run is ``fastcnn`` of conftest_model (fastcnn width 8, 5,000 training images, two epochs, fp32), as
``fmnist train`` wrote it, copied here; its report is made once through the real command with ``--json``.
The test accuracy must lie in a band around the value measured with the fixed seed, and every
prediction must equal that of the model in eval mode scored apart from the product's code (by
hand-normalised images, another batch size, and one image at a time): evaluation with BatchNorm in
training mode, or with augmentation left on, changes predictions and fails here. The metric functions
are also checked on small hand-made arrays.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sklearn.metrics as sk
import torch
from PIL import Image

from conftest import assert_one_line_error, one_cpu
from fmnist.cli import main
from fmnist.evaluate.metrics import confidently_wrong, confusion_matrix, expected_calibration_error, per_class
from fmnist.evaluate.report import evaluate_arrays
from fmnist.models.checkpoint import load_record, save
from fmnist.models.registry import build_model

pytest_plugins = ["conftest_model"]

FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# Test accuracy of conftest_model's "fastcnn" run (seed 0, fp32, one thread): 0.7589 measured with oneDNN's
# AVX-512 kernels (AMD Zen 5, this project's dev box) and 0.7581 with its AVX2 kernels
# (ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2, standing in for the AVX2-only CI machine); seeds 0-4
# give 0.744-0.762 (sd 0.006). The margin, 0.02, is 3 sd of the seed-to-seed spread and 25x the
# kernel-to-kernel one, so no machine leaves the band by chance while a 2-point regression does. Remeasure
# (and say so) when the trainer's recipe or the fixture's settings change on purpose.
ACCURACY, MARGIN = 0.759, 0.02


@pytest.fixture
def _real(real_data, one_torch_thread):
    """In-process commands here read the real data, on one torch thread."""


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, trained_run, fashion, fashion_dir, data_cache) -> dict:
    """A copy of a trained run, ``fmnist evaluate RUN --json`` on it (a real process), and reference
    probabilities of the test set computed apart from the product's inference code."""
    run = tmp_path_factory.mktemp("eval") / "run"
    trained = trained_run("fastcnn", evaluated=False)
    shutil.copytree(trained, run)
    proc = subprocess.run(
        [sys.executable, "-m", "fmnist", "evaluate", str(run), "--json", "--device", "cpu"],
        capture_output=True,
        text=True,
        env={**os.environ, "FMNIST_DATA_DIR": str(fashion_dir), "FMNIST_CACHE": str(data_cache)},
        timeout=300,
        preexec_fn=one_cpu,
    )
    assert proc.returncode == 0, proc.stderr
    images = np.array(fashion.test.images)  # a writable copy (torch.from_numpy below)
    labels = np.asarray(fashion.test.labels).astype(np.int64)
    return {
        "run": run,
        "trained": trained,
        "json": json.loads(proc.stdout),
        "labels": labels,
        "images": images,
        "probs": reference_proba(run, images, batch_size=500),
    }


def reference_net(run: Path) -> tuple[torch.nn.Module, dict]:
    """The saved weights in a freshly built net, in eval mode, and the record (mean, std, classes)."""
    record = load_record(run / "model.pt")
    net = build_model(record["arch"], num_classes=len(record["classes"]), **record["arch_kwargs"])
    net.load_state_dict(record.pop("state_dict"))
    net.train(False)
    assert not any(m.training for m in net.modules())
    return net, record


@torch.no_grad()
def reference_proba(run: Path, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Softmax of the saved model in eval mode over the temperature training saved in calibration.json:
    normalised and batched by hand, not by LoadedModel."""
    net, record = reference_net(run)
    temperature = json.loads((run / "calibration.json").read_text())["temperature"]
    x = torch.from_numpy(np.array(images)).float().div(255).sub(record["mean"]).div(record["std"])
    x = x.unsqueeze(1)
    return torch.cat([torch.softmax(net(b) / temperature, 1) for b in x.split(batch_size)]).numpy()


# ---------------------------------------------------------------- the real command on a tiny run


def test_accuracy_lies_in_the_measured_band(evaluated):
    figures = evaluated["json"]
    assert figures["n"] == 10_000
    assert ACCURACY - MARGIN <= figures["accuracy"] <= ACCURACY + MARGIN, figures["accuracy"]


def test_every_prediction_is_that_of_the_model_in_eval_mode(evaluated):
    """The confusion matrix is that of an independent eval-mode pass: no train-mode BatchNorm, no augmentation."""
    figures, probs, labels = evaluated["json"], evaluated["probs"], evaluated["labels"]
    preds = probs.argmax(1)
    assert np.array_equal(np.array(figures["confusion_matrix"]), sk.confusion_matrix(labels, preds))
    assert figures["accuracy"] == pytest.approx((preds == labels).mean(), abs=1e-12)
    assert (
        figures["dataset"] == "fashion" and figures["data_fingerprint"] == figures["trained_on_fingerprint"]
    )
    assert "warning" not in figures
    assert "calibration_bins" not in figures  # --json leaves the reliability table to evaluation.json


def test_an_image_scored_alone_gets_the_reported_confidence(evaluated):
    """Scores do not depend on the batch: the 25 reported errors, each scored alone, give the same numbers."""
    errors, images = evaluated["json"]["most_confident_errors"], evaluated["images"]
    alone = reference_proba(evaluated["run"], images[[e["index"] for e in errors]], batch_size=1)
    assert [e["confidence"] for e in errors] == pytest.approx(alone.max(1).tolist(), abs=1e-5)
    assert [FASHION_CLASSES[i] for i in alone.argmax(1)] == [e["pred"] for e in errors]


def test_per_class_figures_match_scikit_learn(evaluated):
    figures, labels = evaluated["json"], evaluated["labels"]
    preds = evaluated["probs"].argmax(1)
    precision, recall, f1, support = sk.precision_recall_fscore_support(
        labels, preds, labels=list(range(10)), zero_division=0
    )
    assert list(figures["per_class"]) == list(FASHION_CLASSES)
    for i, name in enumerate(FASHION_CLASSES):
        pc = figures["per_class"][name]
        assert pc["precision"] == pytest.approx(precision[i], abs=1e-9)
        assert pc["recall"] == pytest.approx(recall[i], abs=1e-9)
        assert pc["f1"] == pytest.approx(f1[i], abs=1e-9)
        assert pc["support"] == support[i] == 1000
    assert figures["macro_f1"] == pytest.approx(
        sk.f1_score(labels, preds, average="macro", zero_division=0), abs=1e-9
    )


def test_confusion_matrix_sums_and_diagonal(evaluated):
    figures = evaluated["json"]
    cm = np.array(figures["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == 10_000
    assert np.trace(cm) / 10_000 == pytest.approx(figures["accuracy"], abs=1e-12)
    assert (cm.sum(1) == 1000).all()  # rows are the true classes


def test_ece_and_errors_agree_with_the_predictions(evaluated):
    figures, probs, labels = evaluated["json"], evaluated["probs"], evaluated["labels"]
    ece, _ = expected_calibration_error(probs, labels)
    assert 0 <= figures["ece"] <= 1
    assert figures["ece"] == pytest.approx(ece, abs=1e-5)
    errors = figures["most_confident_errors"]
    assert len(errors) == 25
    confidences = [e["confidence"] for e in errors]
    assert confidences == sorted(confidences, reverse=True)
    assert [e["index"] for e in errors] == confidently_wrong(probs, labels, 25).tolist()
    for e in errors:
        assert e["true"] != e["pred"]
        assert FASHION_CLASSES[labels[e["index"]]] == e["true"]
        assert FASHION_CLASSES[probs[e["index"]].argmax()] == e["pred"]


def test_report_files_exist_and_read_well(evaluated):
    run, figures = evaluated["run"], evaluated["json"]
    saved = json.loads((run / "evaluation.json").read_text())
    assert saved["accuracy"] == figures["accuracy"] and "calibration_bins" in saved
    for name, min_side in (("confusion.png", 400), ("errors.png", 400)):
        path = run / name
        assert path.stat().st_size > 10_000, name
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            assert img.format == "PNG"
            assert min(img.size) >= min_side and max(img.size) <= 4000, img.size
    report = (run / "report.md").read_text()
    assert f"{figures['accuracy']:.4f}" in report
    for name in FASHION_CLASSES:
        assert name in report
    assert "![confusion](confusion.png)" in report and "![errors](errors.png)" in report
    assert '"model": "fastcnn"' in report  # the training config, so the report stands on its own
    # Written beside the model, which is never rewritten; evaluation.json names the model.pt it scored
    # (predict and serve report its accuracy only for that model).
    assert (run / "model.pt").read_bytes() == (evaluated["trained"] / "model.pt").read_bytes()
    assert saved["model_sha256"] == hashlib.sha256((run / "model.pt").read_bytes()).hexdigest()[:16]


@pytest.mark.usefixtures("_real")
def test_plain_output_and_missing_run(evaluated, capsys, tmp_path):
    assert main(["evaluate", str(evaluated["run"]), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"test accuracy {evaluated['json']['accuracy']:.4f}" in out
    assert "Ankle boot" in out and "report.md" in out
    assert main(["evaluate", str(tmp_path / "nope")]) == 2
    assert_one_line_error(capsys.readouterr().err, 2, "no such run folder")
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", str(tmp_path / "empty")]) == 2
    assert_one_line_error(capsys.readouterr().err, 2, "no such model file")


@pytest.mark.usefixtures("_real")
def test_a_model_trained_on_other_data_is_flagged(evaluated, tmp_path, capsys):
    """A model whose recorded data fingerprint is not the data's: the figures carry a warning, and the
    plain output shows it too (the user reading the terminal is the one to warn)."""
    run = tmp_path / "other"
    run.mkdir()
    record = load_record(evaluated["run"] / "model.pt")
    record["data_fingerprint"] = "0123456789ab"
    save(record, run / "model.pt")
    assert main(["evaluate", str(run), "--json", "--device", "cpu"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["trained_on_fingerprint"] == "0123456789ab" != figures["data_fingerprint"]
    assert "fingerprint" in figures["warning"]
    assert main(["evaluate", str(run), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    shown = [line for line in (captured.out + captured.err).splitlines() if "warning" in line.lower()]
    assert shown and "fingerprint" in shown[0], captured.out + captured.err


@pytest.mark.usefixtures("_real")
def test_flip_tta_scores_the_mirror_average_beside_the_plain_evaluation(evaluated, capsys):
    """Runs last among the real-command tests: it adds the TTA evaluation's files to the run."""
    run, labels, images = evaluated["run"], evaluated["labels"], evaluated["images"]
    assert main(["evaluate", str(run), "--tta", "--json", "--device", "cpu"]) == 0
    figures = json.loads(capsys.readouterr().out)
    net, record = reference_net(run)
    x = torch.from_numpy(images).float().div(255).sub(record["mean"]).div(record["std"]).unsqueeze(1)
    with torch.no_grad():
        mirrored = torch.cat([net(b) + net(b.flip(3)) for b in x.split(1000)])
    assert figures["tta"] == "flip"
    assert figures["accuracy"] == pytest.approx((mirrored.argmax(1).numpy() == labels).mean(), abs=1e-12)
    tta = json.loads((run / "evaluation-flip-tta.json").read_text())
    assert tta["accuracy"] == figures["accuracy"] and tta["tta"] == "flip"
    plain = json.loads((run / "evaluation.json").read_text())  # what predict/serve deliver is untouched
    assert plain["accuracy"] == evaluated["json"]["accuracy"] and plain["tta"] is None
    assert "flip test-time augmentation" in (run / "report-flip-tta.md").read_text()
    assert "flip test-time augmentation" not in (run / "report.md").read_text()
    assert (run / "model.pt").read_bytes() == (evaluated["trained"] / "model.pt").read_bytes()


# ---------------------------------------------------------------- metrics on hand-made arrays


def test_confusion_matrix_by_hand():
    labels = np.array([0, 0, 1, 2, 2, 2])
    preds = np.array([0, 1, 1, 2, 0, 2])
    expected = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert np.array_equal(confusion_matrix(labels, preds, 3), expected)
    assert confusion_matrix(labels, preds, 4).shape == (4, 4)  # a class never seen gets a zero row/column


def test_per_class_by_hand_including_undefined_cases():
    cm = np.array([[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]])
    pc = per_class(cm)
    # class 0: tp 1, predicted 2, support 2; class 1: tp 1, predicted 2, support 1; class 2: tp 2, predicted 2, support 3
    np.testing.assert_allclose(pc["precision"], [0.5, 0.5, 1.0, 0.0])
    np.testing.assert_allclose(pc["recall"], [0.5, 1.0, 2 / 3, 0.0])
    np.testing.assert_allclose(pc["f1"], [0.5, 2 / 3, 0.8, 0.0])  # class 3: no support, no predictions -> 0
    assert pc["support"].tolist() == [2, 1, 3, 0]


def test_ece_by_hand():
    # Five bins of width 0.2. Confidences 0.95 (right), 0.85 (wrong) -> bin (0.8, 1]: accuracy 0.5, confidence 0.9;
    # 0.7 (right) -> bin (0.6, 0.8]: accuracy 1, confidence 0.7; 0.5 (wrong) -> bin (0.4, 0.6]: accuracy 0, confidence 0.5.
    # ECE = 2/4 * |0.5 - 0.9| + 1/4 * |1 - 0.7| + 1/4 * |0 - 0.5| = 0.2 + 0.075 + 0.125 = 0.4
    probs = np.array([[0.95, 0.05], [0.15, 0.85], [0.7, 0.3], [0.5 + 1e-9, 0.5 - 1e-9]])
    labels = np.array([0, 0, 0, 1])
    ece, bins = expected_calibration_error(probs, labels, bins=5)
    assert ece == pytest.approx(0.4, abs=1e-6)
    assert [(b["count"], b["accuracy"]) for b in bins] == [(1, 0.0), (1, 1.0), (2, 0.5)]
    assert [b["confidence"] for b in bins] == pytest.approx([0.5, 0.7, 0.9], abs=1e-6)
    # Always right with full confidence: perfectly calibrated.
    assert expected_calibration_error(np.eye(3), np.arange(3))[0] == 0.0


def test_confidently_wrong_by_hand():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([1, 1, 1, 0])  # wrong: 0 (0.9), 2 (0.6), 3 (0.7)
    assert confidently_wrong(probs, labels, 2).tolist() == [0, 3]
    assert confidently_wrong(probs, labels, 10).tolist() == [0, 3, 2]
    assert confidently_wrong(probs[[1]], labels[[1]], 5).tolist() == []


def test_evaluate_arrays_by_hand():
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    labels = np.array([0, 1, 1, 2])
    f = evaluate_arrays(probs, labels, ["a", "b", "c"])
    assert f["accuracy"] == 0.75 and f["n"] == 4
    assert f["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert f["per_class"]["a"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert f["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
