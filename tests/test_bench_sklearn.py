"""The scikit-learn baselines: grid, renamed parameters, runs under limits and resumed, Dask, the dashboard.

Runs use a tiny synthetic data set (an NPZ in the `fmnist data export` layout, 300 training and
100 test images whose class is a bright band), so no test needs the real files. Probe estimators
written into the test's folder sleep, spin or allocate past the limits to show the kernel stops them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from fmnist import dask_client
from fmnist.baselines import grid as gridmod
from fmnist.baselines.estimators import build_estimator, memory_estimate, sanity_check
from fmnist.baselines.job import Job, outcome
from fmnist.baselines.report import best_per_family, load_rows, write_report
from fmnist.baselines.results import append_external_result, external_row, read_results, repair_tail
from fmnist.baselines.runner import SklearnBenchConfig, run_benchmark
from fmnist.cli import main
from fmnist.errors import ConfigError
from fmnist.grid import expand

PROBES = '''
"""Estimators that misbehave on purpose; each passes the 20-image sanity check at once."""
import time

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class Probe(ClassifierMixin, BaseEstimator):
    fits = 0  # real fits in this process

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        if len(X) > 20:
            type(self).fits += 1
            self.misbehave()
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])


class Sleepy(Probe):
    def __init__(self, seconds=600.0):
        self.seconds = seconds

    def misbehave(self):
        time.sleep(self.seconds)


class Spinner(Probe):
    """Burns CPU from its from_fit-th real fit on."""

    def __init__(self, seconds=120.0, from_fit=1):
        self.seconds, self.from_fit = seconds, from_fit

    def misbehave(self):
        if type(self).fits >= self.from_fit:
            end = time.process_time() + self.seconds
            while time.process_time() < end:
                pass


class Hog(Probe):
    """One big allocation: the address-space limit turns it into a MemoryError."""

    def __init__(self, mb=4000):
        self.mb = mb

    def misbehave(self):
        self.block = np.ones(self.mb * 2**17)


class CreepingHog(Probe):
    """Grows 50 MiB at a time, touching every page: the same data limit stops it, whatever the pace."""

    def __init__(self, mb=1500):
        self.mb = mb

    def misbehave(self):
        self.blocks = []
        for _ in range(self.mb // 50):
            self.blocks.append(np.ones(50 * 2**17))
            time.sleep(0.02)
'''


@pytest.fixture
def probes(tmp_path, monkeypatch) -> str:
    """Make the probe module importable by the job processes (they inherit PYTHONPATH)."""
    (tmp_path / "bench_probes.py").write_text(PROBES)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    return "bench_probes"


def write_grid(path: Path, classifiers: dict) -> str:
    path.write_text(json.dumps({"common": {}, "classifiers": classifiers}))
    return str(path)


def config(tmp_path, npz, grid, **kw) -> SklearnBenchConfig:
    base = dict(
        results=str(tmp_path / "results.jsonl"),
        dataset="tiny",
        data_npz=str(npz),
        grid=grid,
        quick=100,
        repeats=2,
        jobs=2,
        time_limit=60.0,
        memory_limit_mb=500.0,
    )
    return SklearnBenchConfig(**{**base, **kw})


# --------------------------------------------------------------------------- grid and mapping


def test_grid_expands_to_the_143_configurations_of_the_readme():
    configs = gridmod.expand(gridmod.load_grid())
    assert len(configs) == gridmod.EXPECTED_CONFIGS == 143
    assert len({c.key for c in configs}) == 143
    counts = Counter(c.family for c in configs)
    assert counts == {
        "PassiveAggressiveClassifier": 3,
        "SGDClassifier": 15,
        "Perceptron": 3,
        "DecisionTreeClassifier": 12,
        "RandomForestClassifier": 18,
        "LogisticRegression": 12,
        "MLPClassifier": 8,
        "KNeighborsClassifier": 12,
        "SVC": 12,
        "GaussianNB": 1,
        "ExtraTreeClassifier": 12,
        "GaussianProcessClassifier": 2,
        "GradientBoostingClassifier": 9,
        "LinearSVC": 24,
    }
    assert len(gridmod.select(configs, ["svc"])) == 12
    assert len(gridmod.select(configs, ["RandomForest,GaussianNB"])) == 19
    with pytest.raises(ConfigError, match="unknown family 'Forest'"):
        gridmod.select(configs, ["Forest"])


def test_one_grid_expansion_for_sweeps_and_baselines(tmp_path):
    assert expand({"a": [1, 2], "b": ["x", "y"]}) == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
    ]
    assert expand({}) == [{}]
    # The baselines' blocks merge into one product, so a parameter may be named in one block only.
    twice = write_grid(tmp_path / "twice.json", {"SVC": [{"C": [1.0]}, {"C": [10.0]}]})
    with pytest.raises(ConfigError, match="names a parameter in two blocks"):
        gridmod.load_grid(twice)


def test_renamed_parameters_map_to_todays_sklearn_and_keep_their_spelling():
    from sklearn.multiclass import OneVsRestClassifier

    configs = {c.key: c for c in gridmod.expand(gridmod.load_grid())}

    def built(name, **params):
        cfg = configs[gridmod.BenchConfig(name, params).key]
        return cfg, build_estimator(cfg.name, cfg.parameters)

    cfg, b = built("SGDClassifier", loss="log", penalty="l2")
    assert b.estimator.loss == "log_loss" and cfg.parameters["loss"] == "log"
    assert "loss='log' -> 'log_loss'" in b.mapped
    cfg, b = built("GradientBoostingClassifier", loss="deviance", n_estimators=10, max_depth=3)
    assert b.estimator.loss == "log_loss" and cfg.parameters["loss"] == "deviance"
    _, b = built("LogisticRegression", penalty="l1", C=10.0, multi_class="ovr")
    assert isinstance(b.estimator, OneVsRestClassifier)
    assert b.estimator.estimator.solver == "liblinear" and b.estimator.estimator.C == 10.0
    _, b = built("LogisticRegression", penalty="l1", C=1.0, multi_class="multinomial")
    assert b.estimator.solver == "saga" and "multi_class" not in b.estimator.get_params()
    _, b = built("LogisticRegression", penalty="l2", C=1.0, multi_class="multinomial")
    assert b.estimator.solver == "lbfgs"
    _, b = built("PassiveAggressiveClassifier", C=10.0)
    assert type(b.estimator).__name__ in ("SGDClassifier", "PassiveAggressiveClassifier")
    if type(b.estimator).__name__ == "SGDClassifier":
        assert (b.estimator.learning_rate, b.estimator.eta0, b.estimator.loss) == ("pa1", 10.0, "hinge")
    cfg, b = built("MLPClassifier", activation="relu", hidden_layer_sizes="(100,10,)")
    assert b.estimator.hidden_layer_sizes == (100, 10) and cfg.parameters["hidden_layer_sizes"] == "(100,10,)"


def test_sanity_check_finds_combinations_sklearn_rejects():
    rng = np.random.default_rng(0)
    images, labels = rng.normal(size=(40, 784)), np.arange(40) % 10
    bad = build_estimator("LinearSVC", {"loss": "hinge", "penalty": "l1", "C": 1.0, "multi_class": "ovr"})
    assert "penalty='l1'" in sanity_check(bad.estimator, images, labels)
    fine = build_estimator(
        "LinearSVC", {"loss": "hinge", "penalty": "l1", "C": 1.0, "multi_class": "crammer_singer"}
    )
    assert sanity_check(fine.estimator, images, labels) is None


def test_gaussian_process_on_the_full_set_is_refused_with_its_estimate(tmp_path, tiny_npz):
    full = [6000] * 10
    assert memory_estimate("GaussianProcessClassifier", {"multi_class": "one_vs_rest"}, full) > 150 * 2**30
    assert (
        memory_estimate("GaussianProcessClassifier", {"multi_class": "one_vs_one"}, full) == 6 * 12000**2 * 8
    )
    assert memory_estimate("SVC", {"C": 1.0}, full) is None
    # On the tiny set a 0.1 MiB limit plays the machine's role: refused before starting, nothing runs.
    cfg = config(tmp_path, tiny_npz, None, only=("GaussianProcess",), quick=None, memory_limit_mb=0.1)
    rows = run_benchmark(cfg, log=lambda _: None)
    assert [r["status"] for r in rows] == ["memory", "memory"]
    assert all(
        r["reason"].startswith("refused before starting: needs at least") and r["wall_seconds"] == 0
        for r in rows
    )


# --------------------------------------------------------------------------- runs under limits


def limited_job(**kw) -> Job:
    base = dict(key="k", name="SVC", parameters={}, dataset="tiny", data_dir=None, data_npz=None)
    base |= dict(subsample=100, seed=0, repeats=3, time_limit=5.0, wall_limit=25.0, memory_limit_mb=500.0)
    return Job(**{**base, "threads": 1, **kw})


@pytest.mark.parametrize(
    "walled, returncode, cpu, events, last, status, reason",
    [
        (True, -signal.SIGKILL, 0.1, [], "", "timeout", "killed at the wall-time limit of 25 s"),
        (False, -signal.SIGXCPU, 5.0, [], "", "timeout", "killed at the CPU-time limit of 5 s"),
        (
            False,
            -signal.SIGKILL,
            5.9,
            [],
            "",
            "timeout",
            "killed at the CPU-time limit of 5 s",
        ),  # the hard limit
        (False, -signal.SIGKILL, 1.0, [], "", "memory", "killed by SIGKILL from outside, most likely"),
        (
            False,
            0,
            1.0,
            [{"event": "end", "status": "memory", "reason": "MemoryError: x"}],
            "",
            "memory",
            "MemoryError: x",
        ),
        (False, 1, 1.0, [], "MemoryError", "memory", "MemoryError"),
        (False, 1, 1.0, [], "ValueError: boom", "error", "worker exited with status 1: ValueError: boom"),
        (
            False,
            -signal.SIGXCPU,
            5.0,
            [{"event": "repeat", "score": 0.8}],
            "",
            "done",
            "stopped after 1 of 3 repeats: killed at the CPU",
        ),
    ],
)
def test_each_way_a_job_ends_is_one_status(walled, returncode, cpu, events, last, status, reason):
    got = outcome(limited_job(), events, walled, returncode, last, cpu)
    assert got[0] == status and got[1].startswith(reason), got


@pytest.mark.slow
def test_guards_record_memory_and_skips_and_the_run_goes_on_then_resumes(tmp_path, tiny_npz, probes):
    grid = write_grid(
        tmp_path / "grid.json",
        {
            "GaussianNB": [{"priors": [None]}],
            "SGDClassifier": [{"loss": ["log"]}, {"penalty": ["l2"]}],
            "LinearSVC": [{"loss": ["hinge"]}, {"penalty": ["l1"]}],
            f"{probes}:Hog": [{"mb": [4000]}],
            f"{probes}:CreepingHog": [{"mb": [1500]}],
        },
    )
    cfg = config(tmp_path, tiny_npz, grid, repeats=3)
    rows = {r["family"]: r for r in run_benchmark(cfg, log=lambda _: None)}
    assert {f: r["status"] for f, r in rows.items()} == {
        "GaussianNB": "done",
        "SGDClassifier": "done",
        "LinearSVC": "skipped",
        "Hog": "memory",
        "CreepingHog": "memory",
    }
    sgd = rows["SGDClassifier"]
    assert (
        sgd["parameters"] == {"loss": "log", "penalty": "l2"} and "loss='log' -> 'log_loss'" in sgd["mapped"]
    )
    assert sgd["mean_accuracy"] > 0.8 and sgd["n_train"] == 100 and sgd["quick"] and sgd["subsample"] == 100
    assert 2 <= sgd["repeats"] == len(sgd["scores"]) <= 3 and sgd["fingerprint"] and sgd["n_test"] == 100
    assert rows["GaussianNB"]["repeats"] == 2  # identical scores: no third repeat even if asked
    assert "cannot be built" in rows["LinearSVC"]["reason"]
    assert "MemoryError" in rows["Hog"]["reason"]
    # It grew to the limit (the worker starts at about 125 MiB) and was stopped there. The limit is on data
    # (RLIMIT_DATA: the heap and anonymous maps); resident memory also counts the pages of shared libraries
    # (numpy, scipy, scikit-learn, and pandas / pyarrow, which scikit-learn imports when they are installed),
    # which the limit does not cover: up to about 64 MiB more.
    creep = rows["CreepingHog"]
    assert "MemoryError" in creep["reason"] and 300 < creep["peak_rss_mb"] <= 500 + 64

    # A second run with the same file computes nothing; --retry reruns only the chosen status.
    assert run_benchmark(cfg, log=lambda _: None) == []
    again = run_benchmark(SklearnBenchConfig(**{**cfg.__dict__, "retry": ("skipped",)}), log=lambda _: None)
    assert [r["family"] for r in again] == ["LinearSVC"]
    assert len(read_results(cfg.results)) == 6


@pytest.mark.slow
def test_time_limits_kill_jobs_and_keep_the_repeats_they_finished(tmp_path, tiny_npz, probes):
    # Computing: stopped at 5 CPU seconds (start-up takes about 2), however busy the machine is.
    grid = write_grid(
        tmp_path / "spin.json", {f"{probes}:Spinner": [{"seconds": [120.0]}, {"from_fit": [1, 2]}]}
    )
    cfg = config(tmp_path, tiny_npz, grid, time_limit=5.0, wall_limit=120.0, repeats=3)
    rows = {r["parameters"]["from_fit"]: r for r in run_benchmark(cfg, log=lambda _: None)}
    assert rows[1]["status"] == "timeout" and rows[1]["scores"] == []
    # The kernel counts CPU time in clock ticks; wait4's exact figure can be a few percent lower.
    assert rows[1]["reason"] == "killed at the CPU-time limit of 5 s" and 4.5 <= rows[1]["cpu_seconds"] < 8
    # Slow from the second fit on: the first repeat is a valid measurement and is kept.
    assert rows[2]["status"] == "done" and rows[2]["repeats"] == 1
    assert rows[2]["reason"] == "stopped after 1 of 3 repeats: killed at the CPU-time limit of 5 s"

    # Waiting, not computing: only the wall limit stops it.
    grid = write_grid(tmp_path / "sleep.json", {f"{probes}:Sleepy": [{"seconds": [600.0]}]})
    cfg = config(tmp_path, tiny_npz, grid, time_limit=60.0, wall_limit=6.0)
    t0 = time.monotonic()
    (row,) = run_benchmark(cfg, log=lambda _: None)
    assert time.monotonic() - t0 < 20
    assert row["status"] == "timeout" and row["reason"] == "killed at the wall-time limit of 6 s"
    assert row["cpu_seconds"] < 60 and len(read_results(cfg.results)) == 3


def _stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name: state, parent pid, ..."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from /proc (each process names its parent)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                parents[int(entry.name)] = int(_stat(int(entry.name))[1])
    found, level = [], [pid]
    while level:
        level = [child for child, parent in parents.items() if parent in level]
        found += level
    return found


def running(pid: int) -> bool:
    """Still running (a zombie waiting to be reaped has ended)."""
    try:
        return _stat(pid)[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_a_killed_run_resumes_without_duplicates(tmp_path, tiny_npz):
    grid = write_grid(tmp_path / "grid.json", {"DecisionTreeClassifier": [{"max_depth": [2, 3, 4, 5]}]})
    results = tmp_path / "results.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "fmnist",
        "bench",
        "sklearn",
        "--data-npz",
        str(tiny_npz),
        "--grid",
        grid,
        "--results",
        str(results),
        "--quick",
        "100",
        "--repeats",
        "2",
        "--time-limit",
        "60",
    ]
    first = subprocess.Popen([*cmd, "--jobs", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not read_results(results) and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert read_results(results), (
            first.stderr.read().decode() if first.poll() is not None else "no row in 60 s"
        )
        children = descendants(first.pid)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while any(map(running, children)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(running, children)), "a job process outlived its killed runner"
    before = read_results(results)
    assert 1 <= len(before) < 4

    done = subprocess.run([*cmd, "--jobs", "2"], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    assert f"{len(before)} already in" in done.stdout
    rows = read_results(results)
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)) == 4
    assert all(r["status"] == "done" for r in rows)
    assert rows[: len(before)] == before  # nothing finished was lost or recomputed
    assert json.loads((tmp_path / "results.config.json").read_text())["quick"] == 100


@pytest.mark.slow
def test_dask_local_cluster_runs_the_jobs(tmp_path, tiny_npz):
    grid = write_grid(tmp_path / "grid.json", {"GaussianNB": [{"var_smoothing": [1e-9, 1e-3]}]})
    cfg = config(tmp_path, tiny_npz, grid, scheduler="local", jobs=1)
    rows = run_benchmark(cfg, log=lambda _: None)
    assert sorted(r["parameters"]["var_smoothing"] for r in rows) == [1e-9, 1e-3]
    assert all(r["status"] == "done" and r["mean_accuracy"] > 0.8 for r in rows)


# --------------------------------------------------------------------------- bad input and external rows


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_bad_inputs_are_one_line_errors(tmp_path, tiny_npz, capsys, monkeypatch):
    base = ["bench", "sklearn", "--data-npz", str(tiny_npz), "--results", str(tmp_path / "r.jsonl")]
    assert "unknown family 'Bogus'" in one_line_error(capsys, [*base, "--only", "Bogus"])
    assert "bad scheduler address" in one_line_error(capsys, [*base, "--scheduler", "http://nowhere"])
    monkeypatch.setattr(dask_client, "CONNECT_TIMEOUT", "1s")
    assert "cannot reach the Dask scheduler" in one_line_error(
        capsys, [*base, "--only", "GaussianNB", "--scheduler", "tcp://127.0.0.1:9"]
    )
    (tmp_path / "folder").mkdir()
    folder = ["bench", "sklearn", "--data-npz", str(tiny_npz), "--results", str(tmp_path / "folder")]
    assert "is a folder" in one_line_error(capsys, folder)
    (tmp_path / "page.html").write_text("<html>\n<body>not results</body>\n</html>\n")
    assert "not a results file" in one_line_error(
        capsys, ["bench", "report", "--results", str(tmp_path / "page.html")]
    )
    assert "not found" in one_line_error(
        capsys, ["bench", "report", "--results", str(tmp_path / "missing.jsonl")]
    )
    assert "grid file not found" in one_line_error(capsys, [*base, "--grid", str(tmp_path / "nope.json")])
    assert "--memory-limit must be positive" in one_line_error(capsys, [*base, "--memory-limit", "0"])
    (tmp_path / "cnn.json").write_text(
        json.dumps({"name": "CNN", "dataset": "fashion", "mean_accuracy": 91.6})
    )
    assert "fraction" in one_line_error(
        capsys, ["bench", "add", str(tmp_path / "cnn.json"), "--results", str(tmp_path / "r.jsonl")]
    )


def test_dry_run_shows_how_each_configuration_is_built_and_quick_defaults(tmp_path, tiny_npz, capsys):
    argv = [
        "bench",
        "sklearn",
        "--data-npz",
        str(tiny_npz),
        "--results",
        str(tmp_path / "r.jsonl"),
        "--quick",
        "100",
        "--only",
        "SGD,PassiveAggressive",
        "--dry-run",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    cfg = json.loads(out.splitlines()[0].removeprefix("config: "))
    assert (cfg["quick"], cfg["repeats"], cfg["time_limit"], cfg["dataset"]) == (100, 2, 60.0, "tiny")
    assert "18 configurations, 0 finished, 18 to run" in out
    assert (
        """SGDClassifier {"loss": "log", "penalty": "l1"} -> SGDClassifier(loss='log_loss', penalty='l1')"""
        in out
    )
    assert not (tmp_path / "r.jsonl").exists()  # a dry run writes nothing


def test_cnn_rows_join_the_table_and_a_cut_line_is_repaired(tmp_path, capsys):
    results = tmp_path / "r.jsonl"
    sk = {
        "key": "fashion/full/SVC {}",
        "status": "done",
        "source": "sklearn",
        "family": "SVC",
        "name": "SVC",
        "parameters": {"C": 10.0},
        "dataset": "fashion",
        "mean_accuracy": 0.897,
        "std_accuracy": 0.0,
        "repeats": 1,
        "train_seconds": 900.0,
        "subsample": None,
    }
    results.write_text(
        json.dumps(sk) + "\n" + '{"key": "fashion/full/SVC {\\"C\\": 1'
    )  # a kill cut the last row
    assert len(read_results(results)) == 1
    row = append_external_result(
        results,
        {
            "name": "2 Conv+pooling",
            "dataset": "fashion",
            "scores": [0.91, 0.92],
            "parameters": {"epochs": 10},
            "train_seconds": 120.0,
        },
    )
    assert row["family"] == "CNN" and row["mean_accuracy"] == pytest.approx(0.915) and row["status"] == "done"
    # The CNN benchmark's summary rows: a mean over seeds, its std and the seed count, no scores.
    seeds = external_row(
        {
            "name": "CNN cpu-fast",
            "dataset": "fashion",
            "mean_accuracy": 0.93,
            "std": 0.002,
            "repeats": 3,
            "time_per_repeat": 50.0,
        }
    )
    assert (seeds["repeats"], seeds["std_accuracy"], seeds["train_seconds"]) == (3, 0.002, 50.0)
    assert external_row(seeds) == seeds
    rows = read_results(results)
    assert [r["name"] for r in rows] == ["SVC", "2 Conv+pooling"] and not repair_tail(results)
    assert [r["family"] for r in best_per_family(load_rows([results]), "fashion")] == ["CNN", "SVC"]
    (tmp_path / "more.json").write_text(
        json.dumps([{"name": "ResNet", "dataset": "mnist", "mean_accuracy": 0.995}])
    )
    assert main(["bench", "add", str(tmp_path / "more.json"), "--results", str(results)]) == 0
    assert len(read_results(results)) == 3 and "added mnist/full/ResNet" in capsys.readouterr().out


# --------------------------------------------------------------------------- the dashboard in a browser


def synthetic_rows() -> list[dict]:
    """Finished, failed and CNN rows on two data sets, as the runner and `bench add` write them."""
    rows = []
    specs = [
        ("SVC", {"C": 10.0, "kernel": "rbf"}, 0.897, 0.984, 40.0),
        ("SVC", {"C": 1.0, "kernel": "rbf"}, 0.883, 0.977, 30.0),
        ("SVC", {"C": 1.0, "kernel": "linear"}, 0.839, 0.930, 25.0),
        ("RandomForestClassifier", {"n_estimators": 100}, 0.873, 0.970, 12.0),
        ("GaussianNB", {"priors": [0.1] * 10}, 0.511, 0.556, 0.1),
        ("KNeighborsClassifier", {"n_neighbors": 5, "p": 1}, 0.860, 0.962, 0.01),
    ]
    for name, params, fashion, mnist, secs in specs:
        for ds, acc in (("fashion", fashion), ("mnist", mnist)):
            rows.append(
                {
                    "key": f"{ds}/6000/{name} {json.dumps(params)}",
                    "source": "sklearn",
                    "family": name,
                    "name": name,
                    "parameters": params,
                    "dataset": ds,
                    "status": "done",
                    "reason": "",
                    "scores": [acc],
                    "mean_accuracy": acc,
                    "std_accuracy": 0.001,
                    "repeats": 2,
                    "train_seconds": secs,
                    "subsample": 6000,
                    "quick": True,
                    "fingerprint": "abc",
                    "sklearn": "1.9.1",
                }
            )
    rows.append(
        {
            "key": "fashion/6000/GaussianProcessClassifier {}",
            "family": "GaussianProcessClassifier",
            "name": "GaussianProcessClassifier",
            "parameters": {"multi_class": "one_vs_rest"},
            "dataset": "fashion",
            "status": "timeout",
            "reason": "killed at the time limit of 120 s",
            "scores": [],
            "mean_accuracy": None,
            "subsample": 6000,
        }
    )
    rows.append(
        {
            "key": "fashion/full/CNN {}",
            "source": "cnn",
            "family": "CNN",
            "name": "2 Conv+pooling",
            "parameters": {"epochs": 10},
            "dataset": "fashion",
            "status": "done",
            "scores": [0.921],
            "mean_accuracy": 0.921,
            "std_accuracy": 0.0,
            "repeats": 1,
            "train_seconds": 300.0,
            "subsample": None,
        }
    )
    return rows


@pytest.mark.browser
def test_dashboard_renders_filters_and_sorts_in_headless_chromium(tmp_path):
    from browser import chromium, console_errors, file_url, wait_until

    page = write_report(synthetic_rows(), tmp_path / "dashboard.html", sources=["synthetic"])
    text = page.read_text()
    assert "http://" not in text and "https://" not in text and "<link" not in text  # nothing fetched
    with chromium(tmp_path) as driver:
        driver.get(file_url(page))

        def body_rows(d):
            return d.find_elements("css selector", "#results tbody tr")

        def column(d, header: str) -> list[str]:
            heads = [th.text.rstrip(" ▲▼") for th in d.find_elements("css selector", "#results thead th")]
            i = heads.index(header)
            return [tr.find_elements("css selector", "td")[i].text for tr in body_rows(d)]

        wait_until(driver, lambda d: len(body_rows(d)) == 8)
        assert console_errors(driver) == []
        heads = driver.find_element("css selector", "#results thead").text
        assert "Fashion-MNIST accuracy" in heads and "MNIST accuracy" in heads  # side by side
        assert len(driver.find_elements("css selector", "svg.scatter")) == 2
        points = driver.find_elements("css selector", "svg.scatter g.point")  # matplotlib's markers
        assert len(points) == 13 and all(p.is_displayed() for p in points)
        tips = [p.find_element("css selector", "title").get_attribute("textContent") for p in points]
        assert "2 Conv+pooling epochs=10: 0.9210, 300.00 s [full, CNN]" in tips
        best = driver.find_element("css selector", "#best tbody tr").text
        assert best.startswith("CNN") and "0.9210" in best

        name_box = driver.find_element("id", "filter-name")
        name_box.send_keys("svc")
        wait_until(driver, lambda d: len(body_rows(d)) == 3)
        assert set(column(driver, "Name")) == {"SVC"}
        driver.find_element("id", "filter-param").send_keys("kernel=rbf")
        wait_until(driver, lambda d: len(body_rows(d)) == 2)
        assert driver.find_element("id", "row-count").text == "2 of 8 configurations"
        name_box.clear()
        driver.find_element("id", "filter-param").clear()
        driver.execute_script(
            "for (const id of ['filter-name', 'filter-param'])"
            " document.getElementById(id).dispatchEvent(new Event('input'))"
        )
        wait_until(driver, lambda d: len(body_rows(d)) == 8)

        header = next(
            th
            for th in driver.find_elements("css selector", "#results thead th")
            if th.text.startswith("MNIST accuracy")
        )
        header.click()  # numbers sort descending first, blanks last
        wait_until(driver, lambda d: header.get_attribute("aria-sort") == "descending")
        values = [float(v) for v in column(driver, "MNIST accuracy") if v]
        assert values == sorted(values, reverse=True) and len(values) == 6
        header.click()
        wait_until(driver, lambda d: header.get_attribute("aria-sort") == "ascending")
        values = [float(v) for v in column(driver, "MNIST accuracy") if v]
        assert values == sorted(values)
        assert column(driver, "MNIST accuracy")[-1] == ""  # the rows without MNIST results stay last
        timeout_cell = driver.find_element("css selector", "#results td.bad")
        assert timeout_cell.text == "timeout" and "time limit" in timeout_cell.get_attribute("title")


def test_report_command_writes_the_page_and_prints_the_best_per_family(tmp_path, capsys):
    results = tmp_path / "r.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in synthetic_rows()))
    out = tmp_path / "out" / "d.html"
    assert main(["bench", "report", "--results", str(results), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.exists() and "| CNN | epochs=10 | 0.9210" in printed and "MNIST:" in printed
    assert os.path.getsize(out) < 200_000
