"""``fmnist viz embed`` on the tiny IDX data set: every method, both feature kinds, the side-by-side figure,
and bad input as one ``fmnist: error:`` line."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fmnist.cli import main
from fmnist.viz.embed import MIN_N, spread_points, subsample

FMNIST = Path(sys.executable).with_name("fmnist")


def save_tiny_model(run: Path) -> Path:
    """A run folder holding an untrained fastcnn model.pt: enough for penultimate features."""
    import torch

    from fmnist.models.checkpoint import MODEL_FILE, model_record, save
    from fmnist.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("fastcnn", num_classes=10, width=4)
    record = model_record(
        model,
        arch="fastcnn",
        arch_kwargs={"width": 4},
        classes=[f"class{i}" for i in range(10)],
        mean=0.2,
        std=0.3,
        dataset="tiny",
        fingerprint="test",
        epoch=1,
        metrics={},
        config={},
    )
    return save(record, run / MODEL_FILE)


pytestmark = pytest.mark.usefixtures("one_blas_thread")


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("method", ["pca", "tsne", "umap"])
def test_pixel_maps(method, tiny_spec, tiny_idx_dir, tmp_path, capsys):
    rc = main(
        [
            "viz",
            "embed",
            "--dataset",
            "tiny",
            "--data-dir",
            str(tiny_idx_dir),
            "--method",
            method,
            "--n",
            "60",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "60 of 100 train images (random subsample, seed 0)" in out
    stem = tmp_path / f"tiny-train-pixels-{method}"
    rows = read_rows(stem.with_suffix(".csv"))
    assert len(rows) == 60 and list(rows[0]) == ["index", "label", "class", "x", "y"]
    assert len({r["index"] for r in rows}) == 60 and all(np.isfinite(float(r["x"])) for r in rows)
    assert rows[0]["class"] == f"class{rows[0]['label']}"
    info = json.loads(stem.with_suffix(".json").read_text())
    assert (info["n"], info["total"], info["method"], info["features"]) == (60, 100, method, "pixels")
    assert stem.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cnn_feature_map_with_thumbnails(tiny_spec, tiny_idx_dir, tmp_path):
    save_tiny_model(tmp_path / "run")
    rc = main(
        [
            "viz",
            "embed",
            "--dataset",
            "tiny",
            "--data-dir",
            str(tiny_idx_dir),
            "--features",
            "cnn",
            "--run",
            str(tmp_path / "run"),
            "--split",
            "t10k",
            "--thumbnails",
            "--out",
            str(tmp_path / "m"),
        ]
    )
    assert rc == 0
    rows = read_rows(tmp_path / "m" / "tiny-t10k-cnn-pca.csv")
    assert len(rows) == 50  # the default n exceeds the split: all images, no subsample
    assert (tmp_path / "m" / "tiny-t10k-cnn-pca.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "m" / "tiny-t10k-cnn-pca.json").read_text())["note"] == "all 50 t10k images"


def test_both_data_sets_side_by_side(tiny_idx_dir, register_dataset, tmp_path):
    for name in ("fashion", "mnist"):  # stand-ins, found as a "system copy"
        register_dataset(tiny_idx_dir, name=name, system_dirs=(str(tiny_idx_dir),))
    rc = main(["viz", "embed", "--dataset", "both", "--n", "30", "--out", str(tmp_path)])
    assert rc == 0
    assert (tmp_path / "fashion-mnist-train-pixels-pca.png").exists()
    assert len(read_rows(tmp_path / "mnist-train-pixels-pca.csv")) == 30


def test_subsample_and_spread_points():
    idx = subsample(100, 30, seed=1)
    assert (
        len(set(idx)) == 30 and list(idx) == sorted(idx) and subsample(10, 30, 0).tolist() == list(range(10))
    )
    xy = np.random.default_rng(0).normal(size=(200, 2))
    picked = spread_points(xy, 5)
    assert len(set(picked.tolist())) == 5


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--features", "cnn", "--run", "MISSING"], "no such model file"),
        (["--features", "cnn"], "--features cnn needs --run"),
        (["--method", "isomap"], "unknown --method 'isomap'"),
        (["--features", "hog"], "unknown --features 'hog'"),
        (["--n", "0"], f"--n must be at least {MIN_N}"),
        (["--run", "x"], "--run is used only with --features cnn"),
    ],
)
def test_bad_input_is_one_line(args, fragment, tiny_spec, tiny_idx_dir, tmp_path, capsys):
    args = [a.replace("MISSING", str(tmp_path / "nope")) for a in args]
    rc = main(
        ["viz", "embed", "--dataset", "tiny", "--data-dir", str(tiny_idx_dir), "--out", str(tmp_path), *args]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("fmnist: error:") and fragment in err[0], err


def test_mnist_unavailable_is_one_line(tmp_path):
    """No MNIST here (no mirror answers, no system copy): one error line from the real command, no traceback."""
    env = {**os.environ, "FMNIST_MIRROR": "http://127.0.0.1:9/"}  # port 9: refused at once
    proc = subprocess.run(
        [str(FMNIST), "viz", "embed", "--dataset", "mnist", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(err) == 1 and err[0].startswith("fmnist: error: MNIST is not available here"), proc.stderr
