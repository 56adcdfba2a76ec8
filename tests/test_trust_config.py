"""Issue #13 (trust) for the training config and exports, and #14's "help and types from the dataclass".

- Every number is checked where it enters (command line, TOML, a resumed config.json, ``TrainConfig(...)``
  in Python): type (a bool is not an int), finite, in range; one ``fmnist: error:`` line, never a traceback.
- ``--threads`` above the cores is capped with a note; a model that cannot fit in free memory is refused
  with its estimate before anything is allocated, and the estimate is checked against a measured peak.
- ``fmnist export`` never destroys a file: not the model, not another run file, not a user's file
  (``--force`` for the last); temp files go away on errors, SIGTERM and Ctrl-C.
- ``fmnist train`` flags take help and type from the field metadata and annotations.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import sigint_default, snapshot
from fmnist.cli import main
from fmnist.errors import ConfigError
from fmnist.train.config import PRESETS, TrainConfig, field_types, make_config, usable_cores

pytest_plugins = ["conftest_model"]
REPO = Path(__file__).resolve().parents[1]


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


# ---------------------------------------------------------------- every number checked, every way in

BAD_VALUES = [
    ({"seed": -1}, "--seed must be in 0..4294967295, got -1"),
    ({"seed": 2**32}, "--seed must be in 0..4294967295"),
    ({"warmup_epochs": math.inf}, "--warmup-epochs must be a finite number, got inf"),
    ({"warmup_epochs": 13.0}, "--warmup-epochs must be at most --epochs (12)"),
    ({"lr": math.inf}, "--lr must be a finite number"),
    ({"lr": math.nan}, "--lr must be a finite number"),
    ({"lr": 1e30}, "--lr must be positive and at most 10"),
    ({"lr": 0.0}, "--lr must be positive"),
    ({"weight_decay": math.inf}, "--weight-decay must be a finite number"),
    ({"weight_decay": 1.0}, "--weight-decay must be in [0, 1)"),
    ({"momentum": -0.1}, "--momentum must be in [0, 1)"),
    ({"epochs": 0}, "--epochs must be positive"),
    ({"epochs": 10**6}, "--epochs must be positive and at most 10000"),
    ({"batch_size": 10**7}, "--batch-size must be positive and at most 65536"),
    ({"eval_batch_size": 0}, "--eval-batch-size must be positive"),
    ({"width": 0}, "--width must be positive"),
    ({"width": 10**6}, "--width must be positive and at most 16384"),
    ({"model": "resnet", "depth": 1000}, "--depth must be positive and at most 100"),
    ({"crop_pad": 9}, "--crop-pad must be in 0..8"),
    ({"erase_p": 1.5}, "--erase-p must be in [0, 1]"),
    ({"threads": -1}, "--threads must be >= 0"),
    ({"train_limit": 5}, "--train-limit must be at least 20"),
    ({"epochs": "12"}, "config key 'epochs' must be int, got '12'"),
    ({"epochs": True}, "config key 'epochs' must be int, got True"),  # a bool is not an int
    ({"epochs": 2.5}, "config key 'epochs' must be int"),
    ({"lr": "0.1"}, "config key 'lr' must be float, got '0.1'"),
    ({"lr": False}, "config key 'lr' must be float"),
    ({"flip": 1}, "config key 'flip' must be bool"),
    ({"width": "8"}, "config key 'width' must be int or None"),
    ({"device": 0}, "config key 'device' must be str"),
    ({"dataset": "cifar"}, "unknown data set 'cifar'"),
    ({"optimizer": "adam"}, "--optimizer must be sgd or adamw"),
]


@pytest.mark.parametrize(("values", "fragment"), BAD_VALUES, ids=[str(v) for v, _ in BAD_VALUES])
def test_bad_values_are_one_line_config_errors_from_the_api(values, fragment):
    for build in (lambda: make_config(**values), lambda: TrainConfig(**values)):  # both ways in
        with pytest.raises(ConfigError) as info:
            build()
        assert fragment in one_line(str(info.value))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("seed = -1", "--seed must be in 0..4294967295, got -1"),
        ("lr = inf", "--lr must be a finite number"),
        ("lr = nan", "--lr must be a finite number"),
        ("weight_decay = inf", "--weight-decay must be a finite number"),
        ("epochs = true", "config key 'epochs' must be int, got True"),
        ('warmup_epochs = "1"', "config key 'warmup_epochs' must be float"),
        ("batch_size = 1e3", "config key 'batch_size' must be int"),
        ("data_dir = 3", "config key 'data_dir' must be str or None"),
        ("seed = 2024-01-01", "config key 'seed' must be int"),
    ],
)
def test_bad_toml_values_are_one_line_config_errors(tmp_path, text, fragment):
    path = tmp_path / "c.toml"
    path.write_text(f"[train]\n{text}\n")
    with pytest.raises(ConfigError) as info:
        make_config(None, path)
    assert fragment in one_line(str(info.value))


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--seed", "-1"], "--seed must be in 0..4294967295, got -1"),
        (["--warmup-epochs", "inf"], "--warmup-epochs must be a finite number, got inf"),
        (["--lr", "inf"], "--lr must be a finite number"),
        (["--lr", "1e30"], "--lr must be positive and at most 10"),
        (["--weight-decay", "inf"], "--weight-decay must be a finite number"),
    ],
)
def test_bad_flags_are_one_line_errors_before_any_run_folder(flags, fragment, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli(capsys, "train", "--out", str(tmp_path / "run"), *flags)
    assert rc == 2 and "Traceback" not in err
    line = one_line(err)
    assert line.startswith("fmnist: error:") and fragment in line, line
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


def test_resumed_config_json_with_a_string_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({**TrainConfig().to_dict(), "epochs": "12"}))
    rc, _out, err = run_cli(capsys, "train", "--resume", "--out", str(run))
    assert rc == 2 and "Traceback" not in err
    assert "'epochs' must be int, got '12'" in one_line(err)


def test_numbers_are_normalised_to_plain_python():
    """An int for a float field is a float; numpy scalars and paths become plain values (config.json)."""
    cfg = make_config(lr=1, epochs=np.int64(3), momentum=np.float32(0.5), data_dir=Path("/data/x"))
    assert type(cfg.lr) is float and cfg.lr == 1.0
    assert type(cfg.epochs) is int and cfg.epochs == 3
    assert type(cfg.momentum) is float and cfg.data_dir == "/data/x"
    assert json.loads(json.dumps(cfg.to_dict())) == cfg.to_dict()


def test_field_types_come_from_the_annotations():
    kinds = field_types()
    assert kinds["width"] == (int, True) and kinds["epochs"] == (int, False)
    assert kinds["lr"] == (float, False) and kinds["flip"] == (bool, False)
    assert kinds["data_dir"] == (str, True) and set(kinds) == {
        f.name for f in dataclasses.fields(TrainConfig)
    }


# ---------------------------------------------------------------- threads capped at the cores


def test_threads_above_the_cores_are_capped_with_a_note(capsys):
    cores = usable_cores()
    cfg = make_config(threads=cores + 997)
    assert cfg.threads == cores
    note = one_line(capsys.readouterr().err)
    assert note.startswith("note: --threads") and f"capped at {cores}" in note
    assert make_config(threads=0).threads == 0  # 0 still means "all cores", decided at run time
    assert make_config(threads=1).threads == 1
    assert capsys.readouterr().err == ""  # no note when nothing was capped


# ---------------------------------------------------------------- memory: refused with an estimate


def test_width_5000_is_refused_quickly_with_an_estimate(monkeypatch):
    import fmnist.train.budget as budget

    monkeypatch.setattr(budget, "available_bytes", lambda device: 16 * 2**30)
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        make_config(width=5000, device="cpu")
    elapsed = time.perf_counter() - start
    message = one_line(str(info.value))
    assert "3,150,535,010 parameters" in message and "GiB to train" in message
    assert "16.0 GiB free on cpu" in message
    assert elapsed < 10, elapsed  # built on the meta device: nothing allocated


def test_width_5000_through_the_command_line(tmp_path):
    """The issue's reproduction, with this machine's real free memory: one line, fast, no run folder."""
    import torch

    from fmnist.train.budget import available_bytes, estimate_training_bytes

    args = ["--width", "5000"]
    probe = dataclasses.replace(TrainConfig(), width=5000, device="cpu")
    if estimate_training_bytes(probe) <= (available_bytes(torch.device("cpu")) or 0):
        args = ["--model", "resnet", "--width", "5000"]  # a machine with > 80 GB free: 16.9e9 parameters
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMNIST_")}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "fmnist", "train", *args, "--device", "cpu", "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    line = one_line(proc.stderr)
    assert line.startswith("fmnist: error: model ") and "GiB to train" in line and "free on cpu" in line
    assert time.perf_counter() - start < 60 and not (tmp_path / "r").exists()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_fits_a_small_machine(preset, monkeypatch):
    """The recipes are accepted with 4 GiB free (the estimates are 0.3-1.7 GiB)."""
    import fmnist.train.budget as budget

    monkeypatch.setattr(budget, "available_bytes", lambda device: 4 * 2**30)
    assert make_config(preset).preset == preset


MEASURE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import torch, torch.nn.functional as F
    torch.set_num_threads(1)
    from fmnist.models.registry import build_model
    from fmnist.train.budget import estimate, weight_copies
    from fmnist.train.config import make_config
    from fmnist.train.trainer import make_optimizer

    cfg = make_config(**json.loads(sys.argv[1]))
    e = estimate(cfg)

    def status(key):
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(key))
        return int(line.split()[1]) * 1024

    x, y = torch.randn(cfg.batch_size, 1, 28, 28), torch.randint(0, 10, (cfg.batch_size,))
    warm = build_model(cfg.model, **cfg.model_kwargs())  # oneDNN and allocator set-up, not counted
    F.cross_entropy(warm(x[:8]), y[:8]).backward()
    del warm
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark (VmHWM)
    base = status("VmRSS:")
    model = build_model(cfg.model, **cfg.model_kwargs())
    opt = make_optimizer(model, cfg)
    for _ in range(3):  # steady state: the allocator's reuse (or not) of freed blocks counts
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    measured = status("VmHWM:") - base
    # the estimate of the same things: weights, gradients, optimiser state and one step's activations
    # (weight_copies also counts the best-model copy, made only at the end of a run)
    predicted = e.step_bytes + e.params * 4 * (weight_copies(cfg) - 1)
    print(json.dumps({"measured": measured, "predicted": predicted}))
    """
)


@pytest.mark.parametrize(
    "knobs",
    [
        {"model": "fastcnn", "width": 16, "batch_size": 512},
        {"model": "resnet", "width": 8, "depth": 1, "batch_size": 256},
    ],
    ids=["fastcnn-w16-b512", "resnet-w8-b256"],
)
def test_the_estimate_is_within_2x_of_a_measured_peak(knobs):
    """torch allocates with malloc, not through Python, so tracemalloc sees nothing: measure the peak RSS
    of a fresh process over three real fp32 training steps (VmHWM reset after a warm-up step)."""
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, json.dumps(knobs)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    ratio = figures["predicted"] / figures["measured"]
    assert 0.5 <= ratio <= 2.0, figures


# ---------------------------------------------------------------- flags: help and type from the dataclass


def test_flag_help_comes_from_field_metadata_not_the_source(monkeypatch, capsys):
    import inspect

    def no_source(*_args, **_kwargs):
        raise OSError("no source (a zipapp, a frozen build, python -OO)")

    monkeypatch.setattr(inspect, "getsource", no_source)
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata["help"], f.name  # every field documents itself
        if f.name != "preset":
            assert f"{f.metadata['help']} (default: {f.default!r})" in out, f.name


def test_flag_types_follow_the_annotations():
    import argparse

    from fmnist.train.cli import add_config_flags

    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    args = parser.parse_args(["--width", "8", "--lr", "1", "--no-flip", "--seed", "3", "--device", "cpu"])
    assert (args.width, args.lr, args.flip, args.seed, args.device) == (8, 1.0, False, 3, "cpu")
    assert type(args.lr) is float and type(args.width) is int
    assert args.epochs is None  # not given: preset and TOML decide
    with pytest.raises(SystemExit):
        parser.parse_args(["--width", "3.5"])  # an int field takes no float on the command line


# ---------------------------------------------------------------- exports never destroy a file


@pytest.fixture
def my_run(run_dir, tmp_path) -> Path:
    """A private copy of the shared fixture's run folder, with a config and metrics beside the model."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy2(run_dir / "model.pt", run / "model.pt")
    (run / "config.json").write_text('{"note": "the run config"}\n')
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')
    return run


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")]


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("name", ["model.pt", "config.json", "metrics.jsonl"])
@pytest.mark.parametrize("force", [False, True])
def test_export_never_writes_over_the_model_or_the_run(my_run, name, force, capsys):
    before = snapshot(my_run)
    args = ["export", str(my_run), "--format", "torchscript", "--out", str(my_run / name)]
    rc, _out, err = run_cli(capsys, *args, *(["--force"] if force else []))
    assert rc == 2
    line = one_line(err)
    assert line.startswith(f"fmnist: error: {my_run / name}: is ")
    assert snapshot(my_run) == before  # byte for byte, nothing added


@pytest.mark.usefixtures("one_torch_thread")
def test_export_via_a_link_to_the_model_is_refused(my_run, tmp_path, capsys):
    link = tmp_path / "link.pt"
    link.symlink_to(my_run / "model.pt")
    before = snapshot(my_run)
    rc, _out, err = run_cli(capsys, "export", str(my_run / "model.pt"), "--out", str(link), "--force")
    assert rc == 2 and "is the model being exported" in one_line(err)
    assert snapshot(my_run) == before and link.is_symlink()


@pytest.mark.usefixtures("one_torch_thread")
def test_export_refuses_a_users_file_unless_forced_and_replaces_its_own(my_run, tmp_path, capsys):
    mine = tmp_path / "mine.pt"
    mine.write_bytes(b"the user's own file")
    rc, _out, err = run_cli(capsys, "export", str(my_run), "--format", "torchscript", "--out", str(mine))
    assert rc == 2 and "exists and is not an fmnist export" in one_line(err) and "--force" in err
    assert mine.read_bytes() == b"the user's own file"

    rc, out, _err = run_cli(
        capsys, "export", str(my_run), "--format", "torchscript", "--out", str(mine), "--force"
    )
    assert rc == 0 and out.startswith(f"wrote {mine}")
    first = mine.read_bytes()
    assert first != b"the user's own file"
    # Exporting again over an earlier export is allowed without --force (here and at the default name).
    rc, _out, _err = run_cli(capsys, "export", str(my_run), "--format", "torchscript", "--out", str(mine))
    assert rc == 0 and mine.stat().st_size > 0
    for _ in range(2):
        rc, _out, err = run_cli(capsys, "export", str(my_run), "--format", "torchscript")
        assert rc == 0, err
    # A user's file at the default export name in the run folder: refused, --force replaces it.
    default = my_run / "model.torchscript.pt"
    default.write_bytes(b"not an export")
    rc, _out, err = run_cli(capsys, "export", str(my_run), "--format", "torchscript")
    assert rc == 2 and "not an fmnist export" in one_line(err) and default.read_bytes() == b"not an export"
    rc, _out, _err = run_cli(capsys, "export", str(my_run), "--format", "torchscript", "--force")
    assert rc == 0 and default.read_bytes() != b"not an export"
    assert no_temp_files(my_run) and no_temp_files(tmp_path)


@pytest.mark.usefixtures("one_torch_thread")
def test_a_failed_write_leaves_no_temp_file_and_the_old_export(my_run, monkeypatch, capsys):
    from fmnist.export.exporters import export

    out = export(my_run, "torchscript")
    before = out.read_bytes()

    def full_disk(_fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        export(my_run, "torchscript")
    assert out.read_bytes() == before and no_temp_files(my_run)


CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    ready, how, run, out = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]

    def slow_fsync(fd):  # the temp file is open and written: the moment a signal must not leak it
        ready.write_text("writing")
        time.sleep(60)

    os.fsync = slow_fsync
    if how == "cli":
        from fmnist.cli import main

        sys.exit(main(["export", run, "--format", "torchscript", "--out", out]))
    from fmnist.export.exporters import export  # the Python API, no CLI signal handler installed

    export(run, "torchscript", out)
    """
)


@pytest.mark.parametrize(
    ("how", "signum", "code"),
    [("cli", signal.SIGTERM, 143), ("cli", signal.SIGINT, 130), ("api", signal.SIGTERM, None)],
)
def test_a_signal_during_the_export_write_leaves_no_temp_file(my_run, tmp_path, how, signum, code):
    ready = tmp_path / "ready"
    out = tmp_path / "out" / "model.ts"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMNIST_")}
    env["OMP_NUM_THREADS"] = "1"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(ready), how, str(my_run), str(out)],
        stdout=subprocess.PIPE,
        preexec_fn=sigint_default,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), child.communicate(timeout=5)
        assert [p.name for p in out.parent.iterdir() if p.name.endswith(".tmp")]  # mid-write: the temp exists
        child.send_signal(signum)
        _stdout, stderr = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    if code is not None:  # the CLI: its exit status and one line
        assert child.returncode == code and "Traceback" not in stderr, stderr
    else:
        assert child.returncode != 0
    assert list(out.parent.iterdir()) == []  # no temp file, no half-written output
