"""``fmnist evaluate``: figures checked against the model's own predictions and scikit-learn; files.

A tiny run (fastcnn width 8, 2,000 images, two epochs) is trained once for the module; its report is
made once through the real command with ``--json``. The metric functions are also checked on small
hand-made arrays. About 15 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fmnist.cli import main
from fmnist.data.loader import load_dataset
from fmnist.evaluate.metrics import confidently_wrong, confusion_matrix, expected_calibration_error, per_class
from fmnist.evaluate.report import evaluate_arrays
from fmnist.models import load_model
from fmnist.train import make_config, train

REAL = Path("/usr/share/datasets/fashion-mnist")
needs_data = pytest.mark.skipif(
    not (REAL / "train-images-idx3-ubyte.gz").exists(), reason="needs the system Fashion-MNIST"
)
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


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fmnist-cache-eval")


@pytest.fixture(autouse=True)
def _shared_cache(data_cache, monkeypatch):
    monkeypatch.setenv("FMNIST_CACHE", str(data_cache))  # after conftest's per-test cache: this one wins
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # with other jobs on the two cores, a second thread mostly waits
    yield
    torch.set_num_threads(threads)


def one_cpu() -> None:
    """Pin a child process to one CPU, so torch there uses one thread (fmnist evaluate has no --threads)."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, data_cache) -> dict:
    """A tiny trained run, ``fmnist evaluate RUN --json`` on it, and the test set's predictions."""
    run = tmp_path_factory.mktemp("eval") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FMNIST_CACHE", str(data_cache))
        for var in ("FMNIST_DATA_DIR", "FMNIST_MIRROR", "FMNIST_NO_SYSTEM_DATA"):
            mp.delenv(var, raising=False)
        threads = torch.get_num_threads()
        train(make_config(model="fastcnn", width=8, train_limit=2000, epochs=2, threads=1), run, log=None)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FMNIST_")}
        env["FMNIST_CACHE"] = str(data_cache)
        proc = subprocess.run(
            [sys.executable, "-m", "fmnist", "evaluate", str(run), "--json", "--device", "cpu"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            preexec_fn=one_cpu,
        )
        assert proc.returncode == 0, proc.stderr
        ds = load_dataset("fashion")
        labels = np.asarray(ds.test.labels).astype(np.int64)
        probs = load_model(run).predict_proba(np.asarray(ds.test.images))
        torch.set_num_threads(threads)
    return {"run": run, "json": json.loads(proc.stdout), "labels": labels, "probs": probs}


# ---------------------------------------------------------------- the real command on a tiny run


@needs_data
def test_accuracy_is_that_of_the_models_own_predictions(evaluated):
    figures, probs, labels = evaluated["json"], evaluated["probs"], evaluated["labels"]
    assert figures["n"] == len(labels) == 10_000
    preds = probs.argmax(1)
    assert figures["accuracy"] == pytest.approx((preds == labels).mean(), abs=1e-12)
    assert figures["accuracy"] > 0.3  # two short epochs; chance is 0.1
    assert (
        figures["dataset"] == "fashion" and figures["data_fingerprint"] == figures["trained_on_fingerprint"]
    )
    assert "warning" not in figures
    assert "calibration_bins" not in figures  # --json leaves the reliability table to evaluation.json


@needs_data
def test_per_class_figures_match_scikit_learn(evaluated):
    sk = pytest.importorskip("sklearn.metrics")
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
    assert np.array_equal(
        np.array(figures["confusion_matrix"]), sk.confusion_matrix(labels, preds, labels=list(range(10)))
    )


@needs_data
def test_confusion_matrix_sums_and_diagonal(evaluated):
    figures = evaluated["json"]
    cm = np.array(figures["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == 10_000
    assert np.trace(cm) / 10_000 == pytest.approx(figures["accuracy"], abs=1e-12)
    assert (cm.sum(1) == 1000).all()  # rows are the true classes


@needs_data
def test_ece_and_errors_agree_with_the_predictions(evaluated):
    figures, probs, labels = evaluated["json"], evaluated["probs"], evaluated["labels"]
    ece, _ = expected_calibration_error(probs, labels)
    assert 0 <= figures["ece"] <= 1
    assert figures["ece"] == pytest.approx(ece, abs=1e-5)
    errors = figures["most_confident_errors"]
    assert len(errors) == 25
    confidences = [e["confidence"] for e in errors]
    assert confidences == sorted(confidences, reverse=True)
    for e in errors:
        assert e["true"] != e["pred"]
        assert FASHION_CLASSES[labels[e["index"]]] == e["true"]
        assert FASHION_CLASSES[probs[e["index"]].argmax()] == e["pred"]


@needs_data
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
    # the test accuracy is stamped into model.pt for predict / serve
    assert load_model(run).record["metrics"]["test_acc"] == figures["accuracy"]


@needs_data
def test_plain_output_and_missing_run(evaluated, capsys, tmp_path):
    assert main(["evaluate", str(evaluated["run"]), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"test accuracy {evaluated['json']['accuracy']:.4f}" in out
    assert "Ankle boot" in out and "report.md" in out
    assert main(["evaluate", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fmnist: error:") and "no such run folder" in err[0]
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", str(tmp_path / "empty")]) == 2
    assert "no such model file" in capsys.readouterr().err


@needs_data
def test_flip_tta_scores_the_mirror_average_and_keeps_the_plain_stamp(evaluated, capsys):
    """Runs last among the real-command tests: it rewrites the report files as a TTA evaluation."""
    from fmnist.models.checkpoint import load_record

    run, labels = evaluated["run"], evaluated["labels"]
    assert main(["evaluate", str(run), "--tta", "--json", "--device", "cpu"]) == 0
    figures = json.loads(capsys.readouterr().out)
    images = np.asarray(load_dataset("fashion").test.images)
    model = load_model(run)
    mirrored = (model.logits(images) + model.logits(np.ascontiguousarray(images[:, :, ::-1]))) / 2
    assert figures["tta"] == "flip"
    assert figures["accuracy"] == pytest.approx((mirrored.argmax(1).numpy() == labels).mean(), abs=1e-12)
    metrics = load_record(run / "model.pt")["metrics"]
    assert metrics["test_acc_flip_tta"] == figures["accuracy"]
    assert metrics["test_acc"] == evaluated["json"]["accuracy"]  # what predict/serve deliver is untouched
    assert "flip test-time augmentation" in (run / "report.md").read_text()


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
