"""Scale-out: DDP under torchrun (gloo, 2 CPU processes) and Dask sweeps on a LocalCluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fmnist.models.checkpoint import load_model

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
    assert v2 > 0.5 and v1 > 0.5  # both learn (10 classes: chance is 0.1)
    assert abs(v2 - v1) < 0.08, (v2, v1)
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
    second = run([sys.executable, "-m", "fmnist", "train", "--resume", "--out", str(out), "--threads", "1"])
    assert second.returncode == 0, second.stderr[-2000:]
    assert "saved by 2 process(es), now 1" in second.stdout
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["val_acc"] > 0.5


def test_sweep_on_local_cluster_resumes(tmp_path):
    plan = tmp_path / "sweep.toml"
    plan.write_text("[base]\ntrain_limit = 1500\nepochs = 1\nwidth = 8\n[grid]\nseed = [0, 1]\n")
    out = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "-m",
        "fmnist",
        "sweep",
        str(plan),
        "--out",
        str(out),
        "--workers",
        "2",
        "--ensemble",
        "2",
    ]
    first = run(cmd, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    result = json.loads((out / "sweep.json").read_text())
    assert sorted(r["seed"] for r in result["runs"]) == [0, 1]
    assert all(r["status"] == "done" and r["test_acc"] > 0.15 for r in result["runs"])
    assert 0.0 < result["ensemble"]["test_acc"] <= 1.0
    assert "| seed |" in (out / "sweep.md").read_text()
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*/model.pt")}
    again = run(cmd, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    rerun = json.loads((out / "sweep.json").read_text())
    assert all(r["status"] == "reused" for r in rerun["runs"])  # finished runs are not redone
    assert mtimes == {p: p.stat().st_mtime_ns for p in out.glob("*/model.pt")}


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
