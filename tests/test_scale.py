"""Scale-out through the command line: ``fmnist train`` under torchrun (gloo, 2 CPU processes), sweep errors.

These are end-to-end smoke tests of the launcher path (torchrun's environment, rank 0 alone printing and
writing, a checkpoint that loads in one process, a resume on another process count) with the real
FastCNN, which has BatchNorm and augmentation, so the two process counts can only be compared by a band.
The exact checks (disjoint rank slices, summed metrics, the 2-process step equal to the 1-process step,
resume on another world size equal to an uninterrupted run) are in ``test_ddp_exact.py``; a sweep killed
and restarted, and its ensemble, in ``test_sweep_resume.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fmnist.models.inference import load_model

VENV_BIN = Path(sys.executable).parent
TINY = ["--train-limit", "3000", "--width", "8", "--threads", "1", "--batch-size", "128", "--lr", "0.05"]


def run(cmd: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def torchrun(nproc: int, args: list[str]) -> subprocess.CompletedProcess:
    return run(
        [
            str(VENV_BIN / "torchrun"),
            "--standalone",
            f"--nproc-per-node={nproc}",
            "-m",
            "fmnist",
            "train",
            *args,
        ]
    )


def final_val(run_dir: Path) -> float:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return max(r["val_acc"] for r in rows)


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("ddp")
    two, one = base / "two", base / "one"
    p2 = torchrun(2, [*TINY, "--epochs", "2", "--out", str(two)])
    assert p2.returncode == 0, p2.stderr[-2000:]
    p1 = run([sys.executable, "-m", "fmnist", "train", *TINY, "--epochs", "2", "--out", str(one)])
    assert p1.returncode == 0, p1.stderr[-2000:]
    return two, one, p2


def test_ddp_two_processes_match_one_process_band(ddp_runs):
    two, one, proc = ddp_runs
    v2, v1 = final_val(two), final_val(one)
    # Measured (seed 0, 300 validation images): 2 processes 0.723, 1 process 0.713 with bf16 on an
    # AVX512-BF16 CPU; 0.733 / 0.707 in fp32 (--no-bf16); seeds 1 and 2 give 0.693 and 0.673 on 1 process.
    # BatchNorm statistics and augmentation are per rank, so only a band: measured +-0.06, gap < 0.05.
    assert 0.66 <= v2 <= 0.79 and 0.66 <= v1 <= 0.79, (v2, v1)
    assert abs(v2 - v1) < 0.05, (v2, v1)
    # rank 0 alone talks and writes: one config print, one metrics line per epoch
    assert proc.stdout.count("config:") == 1
    assert len((two / "metrics.jsonl").read_text().splitlines()) == 2
    assert "2 processes, 64 images each per step" in proc.stdout


def test_ddp_checkpoint_loads_in_one_process(ddp_runs):
    two, _, _ = ddp_runs
    loaded = load_model(two)
    assert loaded.record["epoch"] >= 1
    state = torch.load(two / "checkpoint.pt", weights_only=False)
    assert state["world_size"] == 2
    assert not any(k.startswith("module.") for k in state["model"])  # unwrapped state dict


def test_resume_across_world_size(tmp_path):
    out = tmp_path / "run"
    first = torchrun(2, [*TINY, "--epochs", "3", "--stop-after", "1", "--out", str(out)])
    assert first.returncode == 0, first.stderr[-2000:]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    before = (out / "metrics.jsonl").read_text().splitlines()
    second = run([sys.executable, "-m", "fmnist", "train", "--resume", "--out", str(out), "--threads", "1"])
    assert second.returncode == 0, second.stderr[-2000:]
    assert "saved by 2 process(es), now 1" in second.stdout
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert lines[:1] == before  # epoch 1 (trained by 2 processes) is kept, not trained again
    rows = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert (state["epoch"], state["world_size"]) == (3, 1)
    # global batch 128 on 2,700 training images: 21 steps per epoch whatever the process count
    assert state["step"] == 3 * 21
    assert rows[-1]["val_acc"] > 0.5


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workers", "0"], "--workers"),
        (["--scheduler", "nonsense"], "--scheduler"),
    ],
)
def test_sweep_bad_input(tmp_path, args, message):
    plan = tmp_path / "sweep.toml"
    plan.write_text("[base]\nepochs = 1\n[grid]\nseed = [0]\n")
    proc = run(
        [sys.executable, "-m", "fmnist", "sweep", str(plan), "--out", str(tmp_path / "o"), *args], timeout=120
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fmnist: error:") and message in lines[0]


def test_sweep_bad_plan(tmp_path):
    plan = tmp_path / "sweep.toml"
    plan.write_text("[grid]\nseed = 3\n")
    proc = run([sys.executable, "-m", "fmnist", "sweep", str(plan), "--out", str(tmp_path / "o")], timeout=60)
    assert (
        proc.returncode != 0 and proc.stderr.startswith("fmnist: error:") and "Traceback" not in proc.stderr
    )
