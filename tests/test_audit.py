"""The audit on synthetic sets with planted duplicates and flipped labels, and through the real command.

The synthetic images are far apart by construction (independent noise of 0..59 grey levels under a
class texture: any two distinct images differ by about 24 grey levels RMS), so the only pairs within
the near-duplicate threshold are the planted ones. The textures (stripes, checks, squares at a random
place) are learnable by a tiny CNN in a few epochs, so flipped labels stand out.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from fmnist.audit.duplicates import NEAR_RMS, exact_pairs, near_pairs, rms_distance
from fmnist.audit.labels import audit_config, cross_validated_scores, stratified_folds
from fmnist.audit.report import audit
from fmnist.cli import main

CLASSES = tuple(f"c{i}" for i in range(10))


def texture(cls: int, size: int = 16) -> np.ndarray:
    """(size, size) bool: class ``cls``'s pattern, told apart by its local structure wherever it sits."""
    r, c = np.mgrid[0:size, 0:size]
    patterns = [
        r % 2 == 0,
        r % 4 < 2,
        r % 6 < 3,
        c % 2 == 0,
        c % 4 < 2,
        c % 6 < 3,
        (r + c) % 2 == 0,
        (r // 3 + c // 3) % 2 == 0,
        np.ones_like(r, bool),
        (r < 2) | (r >= size - 2) | (c < 2) | (c >= size - 2),
    ]
    return patterns[cls]


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 28, 28) uint8 images, (n,) uint8 labels: noise 0..59 with the class texture (255) at a random place."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
    for k in range(n):
        r0, c0 = rng.integers(0, 13, size=2)
        images[k, r0 : r0 + 16, c0 : c0 + 16][texture(int(labels[k]))] = 255
    return images, labels


def jitter(image: np.ndarray, amplitude: int, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(-amplitude, amplitude + 1, size=image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)


@pytest.fixture
def planted():
    """Train 300 / test 100 images with planted pairs: {(split_a, i, split_b, j): (kind, labels agree)}."""
    tr_x, tr_y = synthetic(300, 1)
    te_x, te_y = synthetic(100, 2)
    split = {"train": (tr_x, tr_y), "t10k": (te_x, te_y)}
    pairs = {}

    def plant(kind, a, i, b, j, amplitude=2, agree=True):
        (xa, ya), (xb, yb) = split[a], split[b]
        xa[i] = xb[j] if kind == "exact" else jitter(xb[j], amplitude, seed=i * 1000 + j)
        ya[i] = yb[j] if agree else (yb[j] + 1) % 10
        first, second = sorted([(a, i), (b, j)], key=lambda s_i: (s_i[0] != "train", s_i[1]))  # train first
        pairs[(*first, *second)] = (kind, agree)

    plant("exact", "train", 10, "train", 20)
    plant("exact", "t10k", 5, "t10k", 7)
    plant("exact", "t10k", 30, "train", 40)
    plant("near", "train", 50, "train", 60)
    plant("near", "t10k", 60, "train", 70)
    plant("near", "t10k", 80, "t10k", 90)
    plant("near", "train", 100, "train", 110, agree=False)
    plant("exact", "train", 120, "train", 130, agree=False)
    # Just outside the threshold: counted in the ladder, not listed as a near duplicate.
    tr_x[200] = jitter(tr_x[210], 16, seed=7)
    tr_y[200] = tr_y[210]
    return split, pairs


pytestmark = pytest.mark.usefixtures("one_blas_thread")


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_planted_duplicates_found_exactly(planted, tmp_path):
    split, pairs = planted
    summary = audit(split, CLASSES, tmp_path, label_errors="none", log=None)
    rows = read_csv(tmp_path / "duplicates.csv")
    found = {
        (r["split_a"], int(r["index_a"]), r["split_b"], int(r["index_b"])): (
            r["kind"],
            r["label_a"] == r["label_b"],
        )
        for r in rows
    }
    assert found == pairs
    assert all(float(r["distance"]) == 0 for r in rows if r["kind"] == "exact")
    assert all(0 < float(r["distance"]) <= NEAR_RMS for r in rows if r["kind"] == "near")
    disagree = read_csv(tmp_path / "duplicates_disagree.csv")
    assert {(r["index_a"], r["index_b"], r["kind"]) for r in disagree} == {
        ("100", "110", "near"),
        ("120", "130", "exact"),
    }

    d = summary["duplicates"]
    assert d["exact"]["train-train"]["pairs"] == 2 and d["exact"]["train-train"]["labels_disagree"] == 1
    assert d["exact"]["t10k-t10k"]["pairs"] == 1 and d["exact"]["train-t10k"]["pairs"] == 1
    assert [d["near"][k]["pairs"] for k in ("train-train", "t10k-t10k", "train-t10k")] == [2, 1, 1]
    outside = rms_distance(split["train"][0], np.array([200]), np.array([210]))[0]
    assert NEAR_RMS < outside <= 12
    assert d["ladder"]["12"]["train-train"] == 5  # 2 exact + 2 near + the one just outside the threshold
    assert d["ladder"]["6"]["train-train"] == 4
    assert summary["class_balance"]["train"] == np.bincount(split["train"][1], minlength=10).tolist()
    for name in ("duplicates.png", "class_means.png", "class_stats.csv", "audit.md", "audit.json"):
        assert (tmp_path / name).stat().st_size > 0
    assert not (tmp_path / "label_errors.csv").exists()
    assert json.loads((tmp_path / "audit.json").read_text())["duplicates"]["threshold_rms"] == NEAR_RMS


def test_near_pairs_match_brute_force():
    """The projected search is exact: it returns what comparing every pair on raw pixels returns."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, size=(8, 28, 28))
    images = np.clip(
        base[rng.integers(0, 8, 240)] + rng.normal(0, rng.uniform(0, 12, (240, 1, 1)), (240, 28, 28)), 0, 255
    ).astype(np.uint8)
    flat = images.reshape(240, -1).astype(np.float64)
    sq = (flat**2).sum(axis=1)
    d = np.sqrt(
        np.maximum(sq[:, None] + sq[None] - 2 * flat @ flat.T, 0) / 784
    )  # exact: integers below 2**53
    for threshold in (4.0, 10.0):
        i, j = np.nonzero(np.triu(d <= threshold, k=1))
        found = near_pairs(images, threshold)
        assert len(i) > 0
        assert set(zip(found.i.tolist(), found.j.tolist(), strict=True)) == set(
            zip(i.tolist(), j.tolist(), strict=True)
        )
        np.testing.assert_allclose(found.distance, np.sort(d[i, j]), atol=1e-9)


def test_exact_pairs_groups():
    images = np.zeros((5, 28, 28), np.uint8)
    images[1, 0, 0] = images[3, 5, 5] = 1  # 0, 2, 4 identical; 1 and 3 unique
    found = exact_pairs(images)
    assert set(zip(found.i.tolist(), found.j.tolist(), strict=True)) == {(0, 2), (0, 4), (2, 4)}


def test_stratified_folds_cover_every_class():
    labels = np.repeat(np.arange(10), 7)
    folds = stratified_folds(labels, 5, seed=0)
    for k in range(5):
        assert set(labels[folds == k]) == set(range(10))
    assert np.bincount(folds).max() - np.bincount(folds).min() <= 1


def test_flipped_labels_ranked_first():
    """10 flipped labels among 500: all 10 are the 10 lowest self-confidences (8 of 8 seeds tried)."""
    images, labels = synthetic(500, 0)
    rng = np.random.default_rng(100)
    flips = rng.choice(500, 10, replace=False)
    given = labels.copy()
    given[flips] = (labels[flips] + rng.integers(1, 10, 10)) % 10
    cfg = audit_config(width=8, epochs=6, crop_pad=0, threads=1, seed=0)
    scores = cross_validated_scores(images, given, CLASSES, folds=5, cfg=cfg, log=None)
    assert set(scores.ranking()[:10].tolist()) == set(flips.tolist())
    flagged = set(np.flatnonzero(scores.flagged()).tolist())
    assert flagged <= set(flips.tolist()) and len(flagged) >= 5  # confident learning: no false flags here
    assert scores.accuracy >= 0.97  # the model predicts the true class of the flipped ones too


# --- through the command, on the tiny IDX data set of conftest -------------------------------------------


def save_tiny_model(run: Path, n_classes: int = 10) -> Path:
    """A run folder holding an untrained fastcnn model.pt: enough for features and probabilities."""
    import torch

    from fmnist.models.checkpoint import MODEL_FILE, model_record, save
    from fmnist.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("fastcnn", num_classes=n_classes, width=4)
    record = model_record(
        model,
        arch="fastcnn",
        arch_kwargs={"width": 4},
        classes=[f"class{i}" for i in range(n_classes)],
        mean=0.2,
        std=0.3,
        dataset="tiny",
        fingerprint="test",
        epoch=1,
        metrics={},
        config={},
    )
    return save(record, run / MODEL_FILE)


def test_cli_audit_with_fold_models(tiny_spec, tiny_idx_dir, tmp_path, capsys):
    out = tmp_path / "audit"
    rc = main(
        [
            "audit",
            "--dataset",
            "tiny",
            "--data-dir",
            str(tiny_idx_dir),
            "--folds",
            "2",
            "--epochs",
            "1",
            "--width",
            "4",
            "--threads",
            "1",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "fold 2/2" in text and "exact duplicate pairs: train-train 0" in text
    rows = read_csv(out / "label_errors.csv")
    assert len(rows) == 150 and {r["split"] for r in rows} == {"train", "t10k"}
    conf = [float(r["p_label"]) for r in rows]
    assert conf == sorted(conf)
    assert read_csv(out / "duplicates.csv") == []
    assert (out / "label_errors.png").stat().st_size > 0
    summary = json.loads((out / "audit.json").read_text())
    assert summary["images"] == {"train": 100, "t10k": 50}
    assert summary["class_balance"]["train"] == [10] * 10


def test_cli_audit_with_a_run_scores_the_test_split(tiny_spec, tiny_idx_dir, tmp_path):
    save_tiny_model(tmp_path / "run")
    rc = main(
        [
            "audit",
            "--dataset",
            "tiny",
            "--data-dir",
            str(tiny_idx_dir),
            "--run",
            str(tmp_path / "run"),
            "--limit",
            "12",
            "--out",
            str(tmp_path / "a"),
        ]
    )
    assert rc == 0
    rows = read_csv(tmp_path / "a" / "label_errors.csv")
    assert len(rows) == 12 and {r["split"] for r in rows} == {"t10k"} and {r["fold"] for r in rows} == {"-1"}


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--run", "RUN_MISSING"], "no such model file"),
        (["--folds", "1"], "--folds must be at least 2"),
        (["--limit", "0"], "--limit must be at least 2"),
        (["--threshold", "-1"], "--threshold must be >= 0"),
        (["--label-errors", "none", "--run", "x"], "--run is used only for label errors"),
    ],
)
def test_cli_audit_bad_input(args, fragment, tiny_spec, tiny_idx_dir, tmp_path, capsys):
    args = [a.replace("RUN_MISSING", str(tmp_path / "nope")) for a in args]
    rc = main(
        ["audit", "--dataset", "tiny", "--data-dir", str(tiny_idx_dir), "--out", str(tmp_path / "o"), *args]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("fmnist: error:") and fragment in err[-1], err
    assert len(err) == 1 and "Traceback" not in "\n".join(err)
