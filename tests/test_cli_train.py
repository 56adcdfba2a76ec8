"""``fmnist train``, ``fmnist run`` and the commands' help, through the real command line.

Nonsense configs end as one ``fmnist: error:`` line on stderr (no traceback, non-zero exit); the
config (preset < TOML < flags) is printed at start and saved as config.json with the same values;
``fmnist run`` goes from data to a test accuracy. Real Fashion-MNIST, tiny settings: about 40 s.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from fmnist.cli import main
from fmnist.train.config import AVX2_TWIN, PRESETS, TrainConfig
from fmnist.train.device import default_preset, preset_size_note

REAL = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(
    not (REAL / "train-images-idx3-ubyte.gz").exists(), reason="needs the system Fashion-MNIST"
)


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory) -> Path:
    """One decompressed-array cache for this module (and its subprocesses)."""
    return tmp_path_factory.mktemp("fmnist-cache-cli")


@pytest.fixture(autouse=True)
def _shared_cache(data_cache, monkeypatch):
    monkeypatch.setenv("FMNIST_CACHE", str(data_cache))  # after conftest's per-test cache: this one wins
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def one_cpu() -> None:
    """Pin a child to one CPU: torch there uses one thread (``fmnist run`` has no --threads), and with
    other jobs on the two cores a second OpenMP thread mostly spins and waits."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def fmnist(
    *args: str, cache: Path, cwd: Path | None = None, pin: bool = False
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMNIST_")}
    env["FMNIST_CACHE"] = str(cache)
    return subprocess.run(
        [sys.executable, "-m", "fmnist", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
        preexec_fn=one_cpu if pin else None,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fmnist: error:"), proc.stderr
    assert fragment in lines[0], lines[0]


def printed_config(stdout: str) -> dict:
    """The ``config:`` block printed at start, as a dict of Python values."""
    block = stdout.split("config:\n", 1)[1].splitlines()
    out = {}
    for line in block:
        match = re.fullmatch(r"  (\w+)\s+= (.*)", line)
        if not match:
            break
        out[match.group(1)] = ast.literal_eval(match.group(2))
    return out


# ---------------------------------------------------------------- nonsense configs: one line, no traceback

CUDA = torch.cuda.is_available()

ERROR_CASES = {  # run as real processes
    "epochs-zero": (["--epochs", "0"], "--epochs must be positive"),
    "batch-size-negative": (["--batch-size", "-1"], "--batch-size must be positive"),
    "unknown-model": (["--model", "nope"], "unknown model 'nope'"),
    "cuda-without-cuda": (["--device", "cuda"], "no CUDA GPU"),
    "out-holds-another-run": (["--out", "{tmp}/taken"], "holds another run"),
    "resume-nothing": (["--resume", "--out", "{tmp}/empty"], "nothing to resume"),
    "bad-toml": (["--config", "{tmp}/bad.toml"], "not a valid TOML file"),
    "unknown-toml-key": (["--config", "{tmp}/unknown.toml"], "unknown config key(s): epoch"),
    "wrong-toml-type": (["--config", "{tmp}/typed.toml"], "'epochs' must be int"),
}
MORE_ERROR_CASES = {  # the same path in-process (fmnist.cli.main), to spare a torch import each
    "unknown-preset": (["--preset", "nope"], "unknown preset 'nope'"),
    "knob-the-model-lacks": (["--model", "tutorial", "--width", "8"], "takes no --width"),
    "resume-without-out": (["--resume"], "--resume needs --out"),
    "resume-foreign-config": (
        ["--resume", "--out", "{tmp}/foreign"],
        "not a run config of this fmnist version",
    ),
    "missing-toml": (["--config", "{tmp}/missing.toml"], "config file not found"),
    "toml-train-not-a-table": (["--config", "{tmp}/scalar.toml"], "'train' must be a table"),
    "lr-zero": (["--lr", "0"], "--lr must be positive"),
}


@pytest.fixture(scope="module")
def error_runs(tmp_path_factory, data_cache) -> dict[str, subprocess.CompletedProcess]:
    """Every error case run once, two at a time (each process imports torch: ~2 s)."""
    tmp = tmp_path_factory.mktemp("cli-errors")
    (tmp / "taken").mkdir()
    (tmp / "taken" / "config.json").write_text(json.dumps(TrainConfig().to_dict()))
    (tmp / "empty").mkdir()
    (tmp / "foreign").mkdir()
    (tmp / "foreign" / "config.json").write_text(json.dumps({**TrainConfig().to_dict(), "colour": "red"}))
    (tmp / "bad.toml").write_text("[train]\nepochs = \n")
    (tmp / "unknown.toml").write_text("[train]\nepoch = 3\n")
    (tmp / "typed.toml").write_text('[train]\nepochs = "three"\n')
    (tmp / "scalar.toml").write_text("train = 3\n")
    cases = {name: case for name, case in ERROR_CASES.items() if not (CUDA and name == "cuda-without-cuda")}

    def run(args: list[str]) -> subprocess.CompletedProcess:
        return fmnist("train", *(a.format(tmp=tmp) for a in args), cache=data_cache, cwd=tmp)

    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(cases, pool.map(run, (args for args, _ in cases.values())), strict=True))
    results["_tmp"] = tmp
    return results


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_nonsense_config_is_one_line_error(case, error_runs):
    if case == "cuda-without-cuda" and CUDA:
        pytest.skip("CUDA is available here")
    assert_one_line_error(error_runs[case], ERROR_CASES[case][1])


@pytest.mark.parametrize("case", sorted(MORE_ERROR_CASES))
def test_more_nonsense_configs_in_process(case, error_runs, capsys, monkeypatch):
    args, fragment = MORE_ERROR_CASES[case]
    monkeypatch.chdir(error_runs["_tmp"])
    rc = main(["train", *(a.format(tmp=error_runs["_tmp"]) for a in args)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0
    assert len(err) == 1 and err[0].startswith("fmnist: error:") and fragment in err[0], err


def test_refused_runs_leave_the_other_run_alone(error_runs):
    tmp = error_runs["_tmp"]
    assert sorted(p.name for p in (tmp / "taken").iterdir()) == ["config.json"]
    assert list((tmp / "empty").iterdir()) == []
    assert not (tmp / "runs").exists()  # no default run folder made for a refused config


# ---------------------------------------------------------------- config: TOML, presets, flags, printed, saved


def test_preset_toml_and_flags_apply_in_order_printed_and_saved(tmp_path, data_cache):
    toml = tmp_path / "c.toml"
    toml.write_text('[train]\nmodel = "fastcnn"\nwidth = 8\nepochs = 3\nlr = 0.01\nbatch_size = 64\n')
    run = tmp_path / "run"
    proc = fmnist(
        "train",
        "--preset",
        "tutorial",
        "--config",
        str(toml),
        "--epochs",
        "1",
        "--flip",
        "--train-limit",
        "2000",
        "--threads",
        "1",
        "--out",
        str(run),
        cache=data_cache,
    )
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((run / "config.json").read_text())
    shown = printed_config(proc.stdout)
    assert shown == saved  # printed at start = saved beside the outputs
    assert saved["preset"] == "tutorial"
    assert saved["optimizer"] == PRESETS["tutorial"]["optimizer"]  # preset over defaults
    assert saved["schedule"] == PRESETS["tutorial"]["schedule"]
    assert (saved["model"], saved["width"], saved["lr"], saved["batch_size"]) == (
        "fastcnn",
        8,
        0.01,
        64,
    )  # TOML over preset
    assert saved["epochs"] == 1 and saved["flip"] is True  # flags over TOML and preset
    assert saved["train_limit"] == 2000
    assert "best epoch 1" in proc.stdout and str(run) in proc.stdout
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["epoch"] == 1

    # --resume prints (and uses) the run's saved config, not the command line's defaults.
    again = fmnist("train", "--out", str(run), "--resume", "--threads", "1", cache=data_cache)
    assert again.returncode == 0, again.stderr
    resumed = printed_config(again.stdout)
    assert {k: v for k, v in resumed.items() if k != "threads"} == {
        k: v for k, v in saved.items() if k != "threads"
    }
    assert "after epoch 1/1" in again.stdout


# ---------------------------------------------------------------- fmnist run, end to end


def test_fmnist_run_end_to_end(tmp_path, data_cache):
    run = tmp_path / "main"
    proc = fmnist(
        "run",
        "--train-limit",
        "4000",
        "--epochs",
        "2",
        "--out",
        str(run),
        "--device",
        "cpu",
        cache=data_cache,
        pin=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"run folder: {run}" in proc.stdout
    match = re.search(r"^test accuracy: (0\.\d{4})", proc.stdout, flags=re.M)
    assert match, proc.stdout
    accuracy = float(match.group(1))
    assert accuracy > 0.2  # two epochs of 14 steps on 3,600 images (about 0.4 measured); chance is 0.1
    figures = json.loads((run / "evaluation.json").read_text())
    assert f"{figures['accuracy']:.4f}" == match.group(1)
    assert figures["n"] == 10_000
    for name in (
        "config.json",
        "metrics.jsonl",
        "checkpoint.pt",
        "model.pt",
        "report.md",
        "confusion.png",
        "errors.png",
    ):
        assert (run / name).is_file(), name
    assert json.loads((run / "config.json").read_text())["preset"] == default_preset(torch.device("cpu"))


# ---------------------------------------------------------------- which recipe fits the machine


@pytest.mark.parametrize(("native_bf16", "expected"), [(True, "cpu-fast"), (False, "cpu-fast-avx2")])
def test_default_preset_follows_the_cpu(native_bf16, expected, monkeypatch):
    import fmnist.train.loop as loop

    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: native_bf16)
    assert default_preset(torch.device("cpu")) == expected
    assert default_preset(torch.device("cuda")) == "gpu-fast"


def test_bf16_sized_preset_on_an_fp32_cpu_gets_a_one_line_hint(monkeypatch):
    import fmnist.train.loop as loop

    cpu = torch.device("cpu")
    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: False)
    note = preset_size_note("cpu-fast", cpu, bf16=True)
    assert note is not None and "\n" not in note and "--preset cpu-fast-avx2" in note
    assert "--preset cpu-60s-avx2" in preset_size_note("cpu-60s", cpu, bf16=True)
    assert preset_size_note("cpu-fast-avx2", cpu, bf16=True) is None  # already the fp32 size
    assert preset_size_note("cpu-fast", torch.device("cuda"), bf16=True) is None
    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: True)
    assert preset_size_note("cpu-fast", cpu, bf16=True) is None  # the machine it was sized for
    assert "--no-bf16" in preset_size_note("cpu-fast", cpu, bf16=False)  # fp32 asked for by hand
    for preset, twin in AVX2_TWIN.items():  # twins are the same recipe family, sized for fp32
        a, b = PRESETS[preset], PRESETS[twin]
        assert (a["model"], a["whiten"], a["batch_size"]) == (b["model"], b["whiten"], b["batch_size"])


# ---------------------------------------------------------------- help


@pytest.mark.parametrize("command", ["train", "evaluate", "run"])
def test_help_exits_zero_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "Example" in out and f"fmnist {command}" in out


def test_train_help_lists_the_flags_the_issue_asks_for(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for flag in (
        "--model",
        "--epochs",
        "--batch-size",
        "--lr",
        "--seed",
        "--device",
        "--out",
        "--resume",
        "--train-limit",
        "--data-dir",
        "--config",
        "--preset",
    ):
        assert flag in out, flag


def test_help_through_the_installed_command(data_cache):
    proc = fmnist("train", "--help", cache=data_cache)
    assert proc.returncode == 0 and "Example" in proc.stdout and not proc.stderr
