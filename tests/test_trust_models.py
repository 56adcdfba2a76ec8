"""Model files are data, never code; resume is strict; a diverged run is never saved (issue 13).

- a hostile pickle (``__reduce__`` -> ``os.system``) as model.pt or checkpoint.pt is refused with one
  line by every command that reads one (evaluate, predict, export, serve, train --resume), and its
  command never runs (a marker file under tmp_path never appears);
- damaged or foreign checkpoints and model records are one line each, never a traceback;
- ``train --out`` refuses a folder holding other files; ``--resume`` refuses settings that disagree
  with the saved config (more epochs only on a constant schedule, bit-identical to a longer run);
- a diverging run stops with one line and saves nothing of the diverged epoch; RNG states are restored;
- a failed checkpoint write leaves no temporary file.

Real Fashion-MNIST, tiny settings (300 images, width 8, one thread): about 30 s on two cores.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import fmnist.fsio
import fmnist.train.loop as loop
from conftest import free_port
from fmnist.cli import main
from fmnist.errors import ConfigError, FmnistError
from fmnist.models import load_model
from fmnist.models.checkpoint import model_record, save
from fmnist.models.registry import build_model
from fmnist.train import make_config, train
from fmnist.train.trainer import _restore_rng, _rng_state

TINY = {"model": "fastcnn", "width": 8, "threads": 1, "seed": 0, "train_limit": 300, "val_size": 100}
FLAGS = ["--width", "8", "--threads", "1", "--train-limit", "300", "--val-size", "100", "--device", "cpu"]


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fmnist-cache-trust")


@pytest.fixture(autouse=True)
def _shared_cache_one_thread(data_cache, monkeypatch):
    monkeypatch.setenv("FMNIST_CACHE", str(data_cache))  # one decompressed copy for the module
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_cache) -> Path:
    """A finished 2-epoch run of the real trainer (the template the tests copy and damage)."""
    old = os.environ.get("FMNIST_CACHE")
    os.environ["FMNIST_CACHE"] = str(data_cache)
    try:
        run = tmp_path_factory.mktemp("trained") / "run"
        train(make_config(**TINY, epochs=2), run, log=None)
        return run
    finally:
        if old is None:
            os.environ.pop("FMNIST_CACHE")
        else:
            os.environ["FMNIST_CACHE"] = old


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A private copy of the trained run."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def assert_one_line(rc: int, err: str, *fragments: str) -> None:
    assert rc != 0
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fmnist: error:"), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ---------------------------------------------------------------- hostile pickles


class Evil:
    """Unpickling this runs ``touch MARKER`` (what a hostile model.pt can do under weights_only=False)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def hostile(path: Path, marker: Path, nested: bool) -> Path:
    """A hostile file: the payload alone, or hidden in an otherwise plausible model record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = Evil(marker)
    if nested:
        payload = {"format": "fmnist-model/1", "arch": "fastcnn", "classes": ["a"], "metrics": {"x": payload}}
    torch.save(payload, path)
    return path


def test_the_hostile_file_really_runs_its_command_when_unpickled(tmp_path):
    """The premise of the tests below: loading this file the old way (weights_only=False) runs code."""
    marker = tmp_path / "PWNED"
    torch.load(hostile(tmp_path / "evil.pt", marker, nested=True), weights_only=False)
    assert marker.exists()


COMMANDS = {
    "evaluate": lambda model, tmp: ["evaluate", str(model)],
    "predict": lambda model, tmp: ["predict", str(model), str(tmp / "shirt.png")],
    "export": lambda model, tmp: ["export", str(model), "--out", str(tmp / "out.onnx")],
    "serve": lambda model, tmp: ["serve", str(model), "--port", str(free_port())],
}


@pytest.mark.parametrize("nested", [False, True], ids=["bare", "nested"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_hostile_model_file_is_refused_by_every_command(command, nested, tmp_path, capsys):
    from PIL import Image

    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil"
    hostile(evil / "model.pt", marker, nested)
    Image.fromarray(np.full((28, 28), 200, dtype=np.uint8)).save(tmp_path / "shirt.png")
    rc, _, err = cli(capsys, *COMMANDS[command](evil, tmp_path))
    assert_one_line(rc, err, "model.pt: refused: it holds a Python object")
    assert not marker.exists()
    assert not (tmp_path / "out.onnx").exists()


def test_hostile_model_file_is_refused_by_the_python_api(tmp_path):
    from fmnist.serve.app import create_app

    marker = tmp_path / "PWNED"
    path = hostile(tmp_path / "model.pt", marker, nested=True)
    with pytest.raises(FmnistError, match="refused"):
        load_model(path)
    with pytest.raises(FmnistError, match="refused"):
        create_app(path)
    assert not marker.exists()


@pytest.mark.parametrize("nested", [False, True], ids=["bare", "nested"])
def test_hostile_checkpoint_is_refused_by_resume(run, nested, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    hostile(run / "checkpoint.pt", marker, nested)
    rc, _, err = cli(capsys, "train", "--out", str(run), "--resume", "--threads", "1")
    assert_one_line(rc, err, "checkpoint.pt: refused: it holds a Python object")
    assert not marker.exists()


# ---------------------------------------------------------------- damaged or foreign checkpoints


def damage(run: Path, how: str) -> None:
    path = run / "checkpoint.pt"
    raw = path.read_bytes()
    if how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "random-bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "a-list":
        torch.save([1, 2, 3], path)
    elif how == "other-architecture":  # same config, weights of a wider net
        state = torch.load(path, weights_only=True)
        state["model"] = build_model("fastcnn", width=16).state_dict()
        torch.save(state, path)
    elif how == "other-run":  # a whole checkpoint of another run's config
        state = torch.load(path, weights_only=True)
        state["config"] = {**state["config"], "width": 16, "lr": 0.5}
        torch.save(state, path)
    elif how == "field-of-wrong-type":
        state = torch.load(path, weights_only=True)
        state["epoch"] = "2"
        torch.save(state, path)
    elif how == "config-epochs-a-string":
        config = json.loads((run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps({**config, "epochs": "5"}))
    else:
        raise AssertionError(how)


DAMAGE = {  # fragments with spaces: a test's tmp_path holds its name, with underscores
    "truncated": "not a readable fmnist file (damaged",
    "random-bytes": "not a readable fmnist file (damaged",
    "empty": "not a readable fmnist file (damaged",
    "a-list": "not an fmnist training checkpoint",
    "other-architecture": "weights do not fit this run's model (body.0.weight is [16, 1, 3, 3] in the file",
    "other-run": "written by another run than",
    "field-of-wrong-type": "'epoch' is not of type int",
    "config-epochs-a-string": "'epochs' must be int",
}


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_damaged_or_foreign_checkpoint_is_one_line(run, how, capsys):
    damage(run, how)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    rc, _, err = cli(capsys, "train", "--out", str(run), "--resume", "--threads", "1")
    assert_one_line(rc, err, DAMAGE[how])
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # nothing rewritten


# ---------------------------------------------------------------- model records


def record(**changes) -> dict:
    rec = model_record(
        build_model("fastcnn", width=4),
        arch="fastcnn",
        arch_kwargs={"width": 4},
        classes=[f"c{i}" for i in range(10)],
        mean=0.3,
        std=0.35,
        dataset="fashion",
        fingerprint="abc",
        epoch=1,
        metrics={"val_acc": 0.5},
        config={"model": "fastcnn"},
    )
    for key, value in changes.items():
        if value is KeyError:
            del rec[key]
        else:
            rec[key] = value
    return rec


BAD_RECORDS = {
    "no-arch": ({"arch": KeyError}, "missing 'arch'"),
    "no-mean": ({"mean": KeyError}, "missing 'mean'"),
    "arch-kwargs-not-the-weights": ({"arch_kwargs": {"width": 8}}, "do not fit"),
    "unknown-arch": ({"arch": "transformer"}, "unknown model 'transformer'"),
    "unknown-knob": ({"arch_kwargs": {"heads": 2}}, "takes no heads"),
    "width-a-string": ({"arch_kwargs": {"width": "4"}}, "positive integer"),
    "mean-nan": ({"mean": float("nan")}, "'mean' must be a finite number"),
    "std-zero": ({"std": 0.0}, "'std' must be a finite number above 0"),
    "classes-not-strings": ({"classes": list(range(10))}, "strings only"),
    "classes-too-few": ({"classes": ["a", "b"]}, "do not fit"),
    "input-size": ({"input_size": [3, 32, 32]}, "'input_size' must be [1, 28, 28]"),
    "epoch-a-string": ({"epoch": "1"}, "'epoch' must be an integer"),
    "metrics-a-list": ({"metrics": [1]}, "'metrics' must be a dict"),
    "state-dict-not-tensors": ({"state_dict": {"w": [1.0]}}, "must map names to tensors"),
    "nan-weights": (
        {
            "state_dict": {
                k: v.fill_(float("nan")) if v.is_floating_point() else v
                for k, v in record()["state_dict"].items()
            }
        },
        "holds NaN or infinite values",
    ),
    "not-a-record": ({"format": "something-else"}, "not an fmnist model file"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_bad_model_record_is_one_clear_error(case, tmp_path):
    changes, fragment = BAD_RECORDS[case]
    save(record(**changes), tmp_path / "model.pt")
    with pytest.raises(FmnistError) as info:
        load_model(tmp_path)
    assert fragment in str(info.value) and "model.pt" in str(info.value)


@pytest.mark.parametrize("case", ["no-arch", "arch-kwargs-not-the-weights", "unknown-arch", "no-mean"])
def test_bad_model_record_through_the_cli_is_one_line(case, tmp_path, capsys):
    changes, fragment = BAD_RECORDS[case]
    save(record(**changes), tmp_path / "model.pt")
    rc, _, err = cli(capsys, "export", str(tmp_path), "--out", str(tmp_path / "m.onnx"))
    assert_one_line(rc, err, fragment)


def test_model_files_of_the_current_release_still_load(trained, tmp_path):
    """model.pt as the current release writes it (torch.save of plain types and tensors)."""
    old = torch.load(trained / "model.pt", weights_only=False)  # our own file: safe to read the old way
    torch.save(old, tmp_path / "model.pt")
    loaded = load_model(tmp_path)
    assert loaded.record["epoch"] == old["epoch"] and loaded.classes == old["classes"]


# ---------------------------------------------------------------- run folders


def test_train_refuses_a_folder_of_other_files(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "model.pt").write_bytes(b"my own model")
    (mine / "metrics.jsonl").write_text('{"mine": 1}\n')
    rc, out, err = cli(capsys, "train", "--out", str(mine), "--epochs", "1", *FLAGS)
    assert_one_line(rc, err, "not empty and is not an fmnist run", "metrics.jsonl, model.pt")
    assert (mine / "model.pt").read_bytes() == b"my own model"
    assert (mine / "metrics.jsonl").read_text() == '{"mine": 1}\n'
    assert sorted(p.name for p in mine.iterdir()) == ["metrics.jsonl", "model.pt"]


def test_train_into_an_empty_or_new_folder_with_usual_permissions(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(capsys, "train", "--out", str(empty), "--epochs", "1", *FLAGS)[0] == 0
    assert (empty / "model.pt").exists()
    mask = os.umask(0o022)
    try:
        new = tmp_path / "a" / "new"
        assert cli(capsys, "train", "--out", str(new), "--epochs", "1", *FLAGS)[0] == 0
    finally:
        os.umask(mask)
    for path in (tmp_path / "a", new):
        assert path.stat().st_mode & 0o777 == 0o755, oct(path.stat().st_mode)
    for path in new.iterdir():
        assert path.stat().st_mode & 0o777 == 0o644, (path, oct(path.stat().st_mode))


# ---------------------------------------------------------------- strict resume


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--lr", "0.1", "--batch-size", "64"], ["--lr 0.1 (saved 0.05)", "--batch-size 64 (saved 128)"]),
        (["--epochs", "3"], ["--epochs 3 (saved 2", "onecycle", "--schedule constant"]),
        (["--epochs", "1"], ["--epochs 1 (saved 2)"]),
        (["--width", "16"], ["--width 16 (saved 8)"]),
    ],
    ids=["lr-and-batch-size", "more-epochs-onecycle", "fewer-epochs", "width"],
)
def test_resume_refuses_flags_that_disagree(run, flags, fragments, capsys):
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    rc, _, err = cli(capsys, "train", "--out", str(run), "--resume", "--threads", "1", *flags)
    assert_one_line(rc, err, "these settings disagree with it", *fragments)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_resume_refuses_a_toml_that_disagrees(run, tmp_path, capsys):
    (tmp_path / "c.toml").write_text("[train]\nlr = 0.3\n")
    rc, _, err = cli(capsys, "train", "--out", str(run), "--resume", "--config", str(tmp_path / "c.toml"))
    assert_one_line(rc, err, "--lr 0.3 (saved 0.05)")


def test_resume_accepts_machine_knobs_and_agreeing_flags_and_says_what_it_kept(run, capsys):
    rc, out, err = cli(
        capsys, "train", "--out", str(run), "--resume", "--epochs", "2", "--width", "8", "--threads", "1"
    )
    assert rc == 0, err
    assert "keeps its saved config" in out and "threads=1" in out and "device='auto'" in out


def test_more_epochs_on_a_constant_schedule_equal_a_longer_run(tmp_path, capsys):
    """The documented way to extend a run: --epochs N on resume, for --schedule constant only."""
    constant = [*FLAGS, "--schedule", "constant", "--warmup-epochs", "0.5"]
    short, long = tmp_path / "short", tmp_path / "long"
    assert cli(capsys, "train", "--out", str(short), "--epochs", "1", *constant)[0] == 0
    rc, out, err = cli(capsys, "train", "--out", str(short), "--resume", "--epochs", "2", "--threads", "1")
    assert rc == 0, err
    assert "epochs 1 -> 2" in out and "after epoch 1/2" in out
    assert json.loads((short / "config.json").read_text())["epochs"] == 2
    assert cli(capsys, "train", "--out", str(long), "--epochs", "2", *constant)[0] == 0
    a = torch.load(short / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(long / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["epoch"] for r in fmnist.fsio.read_jsonl(short / "metrics.jsonl")] == [1, 2]


def test_resume_through_the_python_api_is_strict_too(trained, tmp_path):
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    cfg = make_config(**TINY, epochs=2)
    with pytest.raises(ConfigError, match="--lr 0.2"):
        train(dataclasses.replace(cfg, lr=0.2), run, resume=True, log=None)
    with pytest.raises(ConfigError, match="another run"):  # fit's own check, past check_run_dir
        from fmnist.train import fit, load_training_data

        fit(dataclasses.replace(cfg, lr=0.2), load_training_data(cfg, torch.device("cpu")), run, resume=True)


# ---------------------------------------------------------------- divergence


def diverge_from(monkeypatch, first_step: int) -> None:
    """An infinite learning rate from ``first_step`` on (what --lr inf did before the config refused it)."""
    real = loop.lr_at
    monkeypatch.setattr(
        loop, "lr_at", lambda step, *a: float("inf") if step >= first_step else real(step, *a)
    )


def test_a_diverging_run_stops_with_one_line_and_saves_nothing(tmp_path, monkeypatch, capsys):
    diverge_from(monkeypatch, 0)
    out = tmp_path / "run"
    rc, _, err = cli(capsys, "train", "--out", str(out), "--epochs", "2", *FLAGS)
    assert_one_line(rc, err, "training diverged at epoch 1", "lower --lr")
    assert not (out / "model.pt").exists() and not (out / "checkpoint.pt").exists()
    assert fmnist.fsio.read_jsonl(out / "metrics.jsonl") == []


def test_divergence_in_a_later_epoch_keeps_the_earlier_model(tmp_path, monkeypatch):
    cfg = make_config(**TINY, epochs=2)
    diverge_from(monkeypatch, 200 // 128)  # 200 training images, batch 128: one step per epoch
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="diverged at epoch 2"):
        train(cfg, out, log=None)
    assert load_model(out).record["epoch"] == 1
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert [r["epoch"] for r in fmnist.fsio.read_jsonl(out / "metrics.jsonl")] == [1]


# ---------------------------------------------------------------- RNG states


def test_rng_states_are_saved_as_data_and_restored():
    state = _rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5)
    np.random.rand(5)
    random.random()
    _restore_rng(state)
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and random.random() == expected[2]
    # The format of older checkpoints (numpy's own tuple with its uint32 array) is restored too.
    _restore_rng({**state, "numpy": np.random.get_state()})


def test_new_checkpoints_hold_no_numpy_and_old_ones_still_resume(run, capsys):
    path = run / "checkpoint.pt"
    state = torch.load(path, weights_only=True)  # no allow-list needed: tensors and plain data only
    # Rewrite it as the current release did (numpy's RNG tuple), with one epoch left to train.
    np.random.seed(123)
    state["rng"] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    state["epoch"] = 1
    state["step"] = 200 // 128
    torch.save(state, path)
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(path, weights_only=True)  # the old file needs the numpy allow-list
    rc, out, err = cli(capsys, "train", "--out", str(run), "--resume", "--threads", "1")
    assert rc == 0, err
    assert "after epoch 1/2" in out
    assert torch.load(path, weights_only=True)["epoch"] == 2


# ---------------------------------------------------------------- temp files


def test_a_failed_checkpoint_write_leaves_no_temp_file(trained, tmp_path, monkeypatch, capsys):
    """A full disk at the rename of model.pt / checkpoint.pt: one line, old file whole, no temp file."""
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst).name in ("model.pt", "checkpoint.pt"):
            raise OSError(28, "No space left on device", str(dst))
        return real_replace(src, dst)

    with monkeypatch.context() as mp:
        mp.setattr(fmnist.fsio.os, "replace", replace)
        out = tmp_path / "run"
        rc, _, err = cli(capsys, "train", "--out", str(out), "--epochs", "1", *FLAGS)
    assert rc != 0 and "No space left on device" in err and "Traceback" not in err, err
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "metrics.jsonl"]

    save({"epoch": 1}, tmp_path / "model.pt")  # save() alone, over an existing file
    with monkeypatch.context() as mp:
        mp.setattr(fmnist.fsio.os, "replace", replace)
        with pytest.raises(OSError):
            save({"epoch": 2}, tmp_path / "model.pt")
    assert torch.load(tmp_path / "model.pt", weights_only=True) == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["model.pt"]


def test_save_writes_numpy_values_as_plain_data(tmp_path):
    """A record with numpy metrics (say from a user's own scoring) is saved so that it loads as data."""
    rec = record(metrics={"acc": np.float32(0.875), "n": np.int64(3), "cm": np.eye(2, dtype=np.int64)})
    save(rec, tmp_path / "model.pt")
    assert load_model(tmp_path).record["metrics"] == {"acc": 0.875, "n": 3, "cm": [[1, 0], [0, 1]]}
