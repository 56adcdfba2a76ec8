"""``fmnist bench cnn``: time to accuracy, summaries over seeds, ratios against the references.

- ``time_to`` finds the first epoch end at or above each threshold, None when never reached;
- ``summarise`` gives mean ± std over seeds and the median time to each threshold (None unless
  every seed got there); ``ratios`` compares at the highest threshold both sides reached and, given
  the curves, at the reference's final accuracy;
- a tiny real run through the CLI (recipe + both plain-PyTorch references + flip TTA and the
  seed ensemble) writes cnn.json / cnn.md that hold every promised figure;
- bad arguments are one-line errors with exit status 2.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fmnist.bench.cnn import markdown, ratios, summarise, time_to
from fmnist.cli import main
from fmnist.models import build_model, param_count


def row(recipe: str, seed: int, acc: float, curve: list[tuple[float, float]], **extra) -> dict:
    return {
        "recipe": recipe,
        "seed": seed,
        "model": "fastcnn",
        "params": 1000,
        "final_test_acc": acc,
        "train_time_s": curve[-1][0],
        "time_to": time_to(curve),
        "curve": curve,
        "train_images_per_s": 100.0,
        "peak_memory_mb": 10.0,
        **extra,
    }


def test_time_to_is_the_first_epoch_at_or_above_each_threshold():
    curve = [(10.0, 0.89), (20.0, 0.912), (30.0, 0.905), (40.0, 0.931)]
    got = time_to(curve)
    assert got["0.91"] == 20.0  # first reached at 20 s, not the later dip
    assert got["0.93"] == 40.0
    assert got["0.94"] is None and got["0.96"] is None


def test_summarise_and_ratios():
    rows = [
        row("ours", 0, 0.92, [(5.0, 0.90), (10.0, 0.92)], infer_images_per_s_b256=1e4),
        row("ours", 1, 0.94, [(6.0, 0.915), (12.0, 0.94)], infer_images_per_s_b256=1e4),
        row("reference-tutorial", 0, 0.915, [(50.0, 0.90), (100.0, 0.915)]),
    ]
    table = summarise(rows)
    ours, ref = table
    assert ours["acc_mean"] == pytest.approx(0.93) and ours["acc_std"] == pytest.approx(0.01414, abs=1e-4)
    assert ours["t0.91"] == pytest.approx(8.0)  # median of 10 and 6
    assert ours["t0.93"] is None  # one seed never got there
    (speedup,) = ratios(table)
    assert speedup["accuracy"] == "0.91" and speedup["speedup"] == pytest.approx(100.0 / 8.0)
    at_threshold, at_final = ratios(table, rows)
    assert at_threshold == speedup
    # The reference ended at 0.915 (at 100 s); our seeds first reached it at 10 s and 6 s: median 8 s.
    assert at_final["accuracy"].startswith("0.9150") and at_final["speedup"] == pytest.approx(100.0 / 8.0)
    rows[2]["curve"], rows[2]["final_test_acc"] = [(50.0, 0.90), (100.0, 0.935)], 0.935
    assert ratios(table, rows) == [speedup]  # seed 0 never reached 0.935: no same-accuracy row
    text = markdown(table, [speedup], [], {"cpu": "test cpu", "cores": 2, "torch": "x", "python": "y"})
    assert "| ours |" in text and "12.5x" in text and "test cpu" in text


def test_tiny_real_run_writes_every_figure(tmp_path):
    out = tmp_path / "bench"
    cmd = [
        sys.executable,
        "-m",
        "fmnist",
        "bench",
        "cnn",
        "--recipes",
        "cpu-60s",
        "--seeds",
        "0,1",
        "--references",
        "tutorial,resnet",
        "--reference-epochs",
        "1",
        "--reference-resnet",
        "4x1",
        "--epochs",
        "2",
        "--train-limit",
        "800",
        "--test-limit",
        "300",
        "--ensemble",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((out / "cnn.json").read_text())
    recipes = [r["recipe"] for r in result["runs"]]
    assert recipes == ["cpu-60s", "cpu-60s", "reference-tutorial", "reference-resnet"]
    ours = result["runs"][0]
    assert len(ours["curve"]) == 2 and ours["data_load_s"] > 0 and ours["eval_s"] > 0
    assert set(ours["time_to"]) == {"0.91", "0.93", "0.94", "0.95", "0.96"}
    assert ours["train_images_per_s"] > 0 and ours["infer_images_per_s_b256"] > 0 and ours["params"] > 0
    resnet = result["runs"][3]
    assert resnet["params"] == param_count(build_model("resnet", width=4, depth=1))  # not the 64x2 default
    assert [e["name"] for e in result["extra"]] == [
        "cpu-60s + flip TTA (mean over 2 seeds)",
        "cpu-60s ensemble of 2 seeds + flip TTA",
    ]
    assert all(0 <= e["acc"] <= 1 for e in result["extra"])
    assert result["machine"]["torch"] and result["config"]["reference_resnet"] == [4, 1]
    assert "reference-resnet" in (out / "cnn.md").read_text()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--recipes", "nope"], "unknown recipe(s) nope"),
        (["--references", "vgg"], "unknown reference(s) vgg"),
        (["--reference-resnet", "16"], "--reference-resnet must be WIDTHxDEPTH"),
        (["--reference-resnet", "0x1"], "--reference-resnet sizes must be positive"),
    ],
)
def test_bad_arguments_are_one_line_errors(args, fragment, capsys, tmp_path: Path):
    assert main(["bench", "cnn", *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
