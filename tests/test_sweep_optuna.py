"""``fmnist sweep --search optuna``: a 3-trial study of tiny trainings, resumed to 4, and its bad inputs.

The study in OUT/optuna.db must hold one complete trial per run folder, valued at that run's recorded
validation accuracy (never its test accuracy); a rerun with more trials trains only the missing ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from conftest import assert_one_line_error
from fmnist.cli import main

BASE = "[base]\ntrain_limit = 200\nepochs = 1\nwidth = 8\nbatch_size = 32\nseed = 3\n"
PLAN = BASE + '[search]\nlr = {low = 0.01, high = 0.2, log = true}\noptimizer = ["sgd", "adamw"]\n'
ENV = {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def sweep(plan: Path, out: Path, trials: int) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "fmnist", "sweep", str(plan), "--out", str(out), "--workers", "1"]
    proc = subprocess.run(
        [*cmd, "--search", "optuna", "--trials", str(trials)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **ENV},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def mtimes(run: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(run.iterdir())}


def study_trials(out: Path) -> list:
    study = optuna.load_study(study_name="fmnist-sweep", storage=f"sqlite:///{out / 'optuna.db'}")
    return study.get_trials()


def test_optuna_study_values_are_val_acc_and_a_rerun_adds_only_missing_trials(tmp_path):
    plan = tmp_path / "sweep.toml"
    plan.write_text(PLAN)
    out = tmp_path / "sweep"
    # A sweep killed right after asking trial 0: the study holds it RUNNING; the next sweep trains it with
    # the params it was asked with (and asks only two more), rather than leaving it or asking a fourth.
    from fmnist.sweep.optuna_search import open_study, suggest
    from fmnist.sweep.plan import load_search

    search = load_search(plan)
    asked = suggest(open_study(optuna, out, search, seed=0).ask(), search.knobs)
    sweep(plan, out, 3)
    trials = study_trials(out)
    assert trials[0].params == asked
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == ["trial-0000", "trial-0001", "trial-0002"]
    for t in trials:
        evaluation = json.loads((out / f"trial-{t.number:04d}" / "evaluation.json").read_text())
        assert t.value == evaluation["val_acc"] and evaluation["val_acc"] is not None
        config = json.loads((out / f"trial-{t.number:04d}" / "config.json").read_text())
        assert config["lr"] == t.params["lr"] and config["optimizer"] == t.params["optimizer"]
        assert 0.01 <= t.params["lr"] <= 0.2
    before = {name: mtimes(out / name) for name in folders}

    proc = sweep(plan, out, 4)
    trials = study_trials(out)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 4
    assert {name: mtimes(out / name) for name in folders} == before, "a finished trial was retrained"
    assert proc.stdout.count("trial-0003: val") == 1 and "trial-0000: val" not in proc.stdout
    result = json.loads((out / "sweep.json").read_text())
    status = {r["run"]: r["status"] for r in result["runs"]}
    assert status == {
        "trial-0000": "reused",
        "trial-0001": "reused",
        "trial-0002": "reused",
        "trial-0003": "done",
    }
    for row, t in zip(result["runs"], trials, strict=True):
        assert row["run"] == f"trial-{t.number:04d}" and row["val_acc"] == t.value
    best = max(trials, key=lambda t: (t.value, -t.number))
    assert result["best"]["run"] == f"trial-{best.number:04d}"


@pytest.mark.parametrize(
    ("search", "args", "fragments"),
    [
        ("lr = {low = 0.3, high = 0.1}\n", ["--trials", "2"], ["'lr'", "low 0.3 > high 0.1"]),
        ("lr = {low = 0.0, high = 0.1, log = true}\n", ["--trials", "2"], ["log range needs low > 0"]),
        ("frobnicate = [1, 2]\n", ["--trials", "2"], ["unknown knob 'frobnicate'"]),
        ("lr = {low = 0.01}\n", ["--trials", "2"], ["'lr'", "low, high"]),
        ("width = [8, -1]\n", ["--trials", "2"], ["'width' = -1"]),
        ("lr = [0.1]\n", ["--trials", "0"], ["--trials N with N >= 1"]),
        ("lr = [0.1]\n", [], ["--search optuna needs --trials"]),
    ],
)
def test_bad_optuna_inputs_are_one_line_before_anything_runs(tmp_path, capsys, search, args, fragments):
    plan = tmp_path / "sweep.toml"
    plan.write_text(BASE + "[search]\n" + search)
    out = tmp_path / "out"
    rc = main(["sweep", str(plan), "--out", str(out), "--search", "optuna", *args])
    assert_one_line_error(capsys.readouterr().err, rc, *fragments)
    assert not out.exists()


@pytest.mark.parametrize(
    ("table", "args"), [("grid", []), ("search", ["--search", "optuna", "--trials", "2"])]
)
def test_a_sweep_over_a_config_without_a_validation_split_is_refused(tmp_path, capsys, table, args):
    """Both modes rank runs by validation accuracy: `cpu-60s` (no split) would rank NaNs, so it is refused with
    the fix in the message, and with val_size in [base] the same plan is accepted (--dry-run)."""
    plan = tmp_path / "sweep.toml"
    plan.write_text(f'[base]\npreset = "cpu-60s"\ntrain_limit = 300\n[{table}]\nlr = [0.05, 0.1]\n')
    out = tmp_path / "out"
    rc = main(["sweep", str(plan), "--out", str(out), *args])
    assert_one_line_error(
        capsys.readouterr().err, rc, "val_size must be > 0", "add val_size = 5000 to [base]"
    )
    assert not out.exists()
    if table == "grid":
        plan.write_text(plan.read_text().replace("train_limit = 300", "train_limit = 300\nval_size = 100"))
        assert main(["sweep", str(plan), "--out", str(out), "--dry-run"]) == 0, capsys.readouterr().err


def test_trials_without_optuna_and_search_table_in_grid_mode_are_one_line(tmp_path, capsys):
    plan = tmp_path / "sweep.toml"
    plan.write_text(BASE + "[grid]\nseed = [1]\n")
    rc = main(["sweep", str(plan), "--out", str(tmp_path / "out"), "--trials", "3"])
    assert_one_line_error(capsys.readouterr().err, rc, "--trials is for --search optuna")
    plan.write_text(BASE + "[search]\nlr = [0.1]\n")
    rc = main(["sweep", str(plan), "--out", str(tmp_path / "out")])
    assert_one_line_error(capsys.readouterr().err, rc, "[search] is read by --search optuna")
    assert not (tmp_path / "out").exists()


def test_missing_optuna_is_one_line_naming_the_extra(tmp_path, capsys, monkeypatch):
    plan = tmp_path / "sweep.toml"
    plan.write_text(BASE + "[search]\nlr = [0.1]\n")
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    rc = main(["sweep", str(plan), "--out", str(tmp_path / "out"), "--search", "optuna", "--trials", "2"])
    assert_one_line_error(capsys.readouterr().err, rc, 'pip install "fmnist[optuna]"')
    assert not (tmp_path / "out").exists()


def test_a_study_from_another_base_is_refused(tmp_path, capsys):
    """The study DB remembers the plan: rerunning into it with another [base] is one line, nothing run."""
    from fmnist.sweep.optuna_search import open_study
    from fmnist.sweep.plan import load_search

    plan = tmp_path / "sweep.toml"
    plan.write_text(BASE + "[search]\nlr = [0.1, 0.2]\n")
    out = tmp_path / "out"
    open_study(optuna, out, load_search(plan), seed=0)
    plan.write_text(BASE.replace("epochs = 1", "epochs = 2") + "[search]\nlr = [0.1, 0.2]\n")
    rc = main(["sweep", str(plan), "--out", str(out), "--search", "optuna", "--trials", "2"])
    assert_one_line_error(capsys.readouterr().err, rc, "another [base] config", "new --out")
    assert sorted(p.name for p in out.iterdir()) == ["optuna.db"]
