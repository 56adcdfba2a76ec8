"""README promises that no other test held the code to, one test each.

- ``fmnist data fetch`` succeeds from the command line (downloads from a mirror, verifies, caches; a
  second fetch uses the cache), and ``fmnist data info --json`` describes what it got;
- every command and every action has ``--help`` with an example;
- ``--compile`` trains through ``torch.compile``; ``--no-channels-last`` trains in the standard layout;
- ``benchmarks/gpu_bench.sh --dry-run`` runs the GPU benchmark's code path on the CPU;
- ``fmnist run`` turns bad input into one ``fmnist: error:`` line, never a traceback, writing nothing.

(The fingerprint-mismatch warning of ``fmnist evaluate`` is in test_evaluate.py.)
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import FMNIST_VARS, assert_one_line_error, fmnist_cmd, one_cpu
from fmnist.cli import build_parser, main
from fmnist.data.registry import FASHION
from fmnist.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
FMNIST = Path(sys.executable).with_name("fmnist")  # the installed console script


# ---------------------------------------------------------------- fmnist data fetch / info --json


def gz_bytes(fashion_dir: Path, filename: str) -> bytes:
    """A real file as a mirror serves it: gzip'd (compressed here if the local copy is not)."""
    for path in (fashion_dir / filename, fashion_dir / filename[:-3]):
        if path.is_file():
            raw = path.read_bytes()
            return raw if raw[:2] == b"\x1f\x8b" else gzip.compress(raw, mtime=0)
    raise AssertionError(f"{filename} is not in {fashion_dir}")


def installed(*args: str, **env: str) -> subprocess.CompletedProcess:
    """The installed ``fmnist`` command, in this test's environment plus ``env``."""
    return subprocess.run(
        [str(FMNIST), *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=300
    )


def test_data_fetch_and_info_json_from_the_command_line(loopback, fashion_dir, fashion, tmp_path):
    """A machine without the data: `fmnist data fetch` downloads from a mirror into the cache, verified;
    the next fetch finds it there; `fmnist data info --json` describes it."""
    for res in FASHION.resources.values():
        loopback.serve(res.filename, loopback.Reply(gz_bytes(fashion_dir, res.filename)))
    cache = tmp_path / "cache"
    env = {"FMNIST_CACHE": str(cache), "FMNIST_NO_SYSTEM_DATA": "1"}  # as if no system copy existed

    fetched = installed("data", "fetch", "--mirror", loopback.url, **env)
    assert fetched.returncode == 0, fetched.stderr
    raw = cache / "fashion" / "raw"
    assert (
        fetched.stdout.strip().splitlines()[-1] == f"Fashion-MNIST: 4 files verified, from download ({raw})"
    )
    assert sorted(p.name for p in raw.iterdir() if not p.name.startswith(".")) == sorted(
        r.filename for r in FASHION.resources.values()
    )
    assert len(loopback.requests) == 4

    again = installed("data", "fetch", "--mirror", loopback.url, **env)
    assert again.returncode == 0, again.stderr
    assert f"from cache ({raw})" in again.stdout and len(loopback.requests) == 4  # nothing downloaded

    info = installed("data", "info", "--json", **env)
    assert info.returncode == 0, info.stderr
    summary = json.loads(info.stdout)
    assert summary["dataset"] == "Fashion-MNIST" and summary["source"] == "cache"
    assert summary["directory"] == str(raw)
    assert summary["fingerprint"] == fashion.fingerprint  # same bytes, same fingerprint, wherever they lie
    assert summary["total_images"] == 70_000
    for kind, n in (("train", 6000), ("t10k", 1000)):
        split = summary["splits"][kind]
        assert split["images"] == 10 * n and split["shape"] == [28, 28]
        assert split["per_class"] == dict.fromkeys(FASHION.classes, n)  # balanced: 6,000 / 1,000 a class
    assert {f["path"] for f in summary["files"].values()} == {
        str(raw / r.filename) for r in FASHION.resources.values()
    }


# ---------------------------------------------------------------- --help with an example, everywhere


def command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and action of the parser, as argument prefixes: ("data",), ("data", "fetch"), ..."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append((*prefix, name))
                out.extend(command_paths(sub, (*prefix, name)))
    return out


COMMANDS = command_paths(build_parser())


def test_the_parser_has_every_documented_command():
    """So the walk below cannot pass by finding nothing: the README's commands are all there."""
    names = {path[0] for path in COMMANDS}
    assert {
        "data",
        "train",
        "evaluate",
        "run",
        "predict",
        "export",
        "serve",
        "bench",
        "viz",
        "audit",
    } <= names
    assert {"sweep"} <= names
    assert {("data", a) for a in ("fetch", "verify", "info", "export", "sprite")} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_and_action_has_help_with_an_example(path, capsys):
    with pytest.raises(SystemExit) as info:
        main([*path, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: fmnist {' '.join(path)}")
    example = re.search(r"^Example:\n  (.+)$", out, flags=re.M)
    assert example and f"fmnist {' '.join(path)}" in example.group(1), out


# ---------------------------------------------------------------- --compile, --no-channels-last

TINY_TRAIN = [
    "train",
    "--width",
    "8",
    "--train-limit",
    "1000",
    "--val-size",
    "200",
    "--epochs",
    "1",
    "--threads",
    "1",
    "--no-bf16",
    "--device",
    "cpu",
]


@pytest.mark.usefixtures("real_data", "one_torch_thread")
def test_compile_trains_through_torch_compile_and_equals_eager(tmp_path, monkeypatch, capsys):
    """`--compile` wraps the model in torch.compile; training goes through the captured graphs and
    gives the eager run's weights. The graphs run on AOT autograd without code generation
    ("aot_eager"): inductor's C++ build took 133 s here (30 s of CPU) for a 3-step run, too long for
    the suite; what --compile itself does (wrap, trace, train, save the unwrapped model) is the same."""
    from torch._dynamo import lookup_backend

    from fmnist.models import load_model

    real_compile, aot_eager, graphs = torch.compile, lookup_backend("aot_eager"), []

    def recording_backend(gm, example_inputs):
        graphs.append(gm)
        return aot_eager(gm, example_inputs)

    monkeypatch.setattr(torch, "compile", lambda model, **kw: real_compile(model, backend=recording_backend))
    assert main([*TINY_TRAIN, "--compile", "--out", str(tmp_path / "compiled")]) == 0, capsys.readouterr().err
    assert graphs, "torch.compile was not used, or captured nothing"
    assert main([*TINY_TRAIN, "--out", str(tmp_path / "eager")]) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "compiled" / "config.json").read_text())["compile"] is True

    compiled, eager = load_model(tmp_path / "compiled"), load_model(tmp_path / "eager")
    assert compiled.model.state_dict().keys() == eager.model.state_dict().keys()  # no "_orig_mod." prefix
    for key, value in eager.model.state_dict().items():
        torch.testing.assert_close(compiled.model.state_dict()[key], value, rtol=1e-5, atol=1e-6)
    assert compiled.record["metrics"]["val_acc"] == eager.record["metrics"]["val_acc"]


@pytest.mark.usefixtures("real_data", "one_torch_thread")
def test_no_channels_last_trains_in_the_standard_layout(tmp_path, monkeypatch, capsys):
    """With --no-channels-last the weights and the activations inside the net are in the standard
    (NCHW-contiguous) layout while training; by default they are channels_last. Both train."""
    import fmnist.train.trainer as trainer

    seen: dict[str, list] = {}
    layouts: list = []  # (NCHW-contiguous, channels_last) of the activations and weights the spy saw
    real_epoch = trainer.train_one_epoch

    def spying_epoch(model, *args, **kwargs):
        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1]

        def hook(module, inputs):  # the second conv: C > 1, so the two layouts differ
            for t in (inputs[0], module.weight):
                layouts.append((t.is_contiguous(), t.is_contiguous(memory_format=torch.channels_last)))

        handle = convs[0].register_forward_pre_hook(hook)
        try:
            return real_epoch(model, *args, **kwargs)
        finally:
            handle.remove()

    monkeypatch.setattr(trainer, "train_one_epoch", spying_epoch)
    for run, flags in (("standard", ["--no-channels-last"]), ("channels-last", [])):
        layouts.clear()
        assert main([*TINY_TRAIN, *flags, "--out", str(tmp_path / run)]) == 0, capsys.readouterr().err
        seen[run] = list(layouts)
        rows = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        assert len(rows) == 1 and rows[0]["val_acc"] > 0.1  # it trained (chance: 0.1)
    assert seen["standard"] and set(seen["standard"]) == {(True, False)}
    assert seen["channels-last"] and set(seen["channels-last"]) == {(False, True)}
    assert json.loads((tmp_path / "standard" / "config.json").read_text())["channels_last"] is False


# ---------------------------------------------------------------- benchmarks/gpu_bench.sh --dry-run


def test_gpu_bench_dry_run_runs_on_the_cpu(tmp_path, fashion_dir, data_cache):
    """The script the GPU session will run, in its CPU dry run: both GPU recipes on two seeds, both
    references, flip TTA and the ensemble (one CPU: about 7 s of CPU, 40 s on a busy two-core box)."""
    out = tmp_path / "gpu"
    env = {k: v for k, v in os.environ.items() if k not in FMNIST_VARS}
    env.update(PYTHON=sys.executable, FMNIST_DATA_DIR=str(fashion_dir), FMNIST_CACHE=str(data_cache))
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_bench.sh"), str(out), "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        preexec_fn=one_cpu,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    result = json.loads((out / "cnn.json").read_text())
    assert result["config"]["device"] == "cpu" and result["config"]["train_limit"] == 1000
    runs = {(r["recipe"], r["seed"]) for r in result["runs"]}
    assert runs >= {(recipe, seed) for recipe in ("gpu-fast", "gpu-best") for seed in (0, 1)}
    for run in result["runs"]:
        assert 0 <= run["final_test_acc"] <= 1 and run["train_time_s"] > 0
    table = (out / "cnn.md").read_text()
    for row in ("| gpu-fast |", "| gpu-best |", "| reference-tutorial |", "| reference-resnet |"):
        assert row in table, row
    assert "ensemble of 2 seeds + flip TTA" in table


# ---------------------------------------------------------------- fmnist run: one line per bad input

RUN_ERRORS = {
    "epochs-zero": (["--epochs", "0"], "--epochs must be positive"),
    "train-limit-tiny": (["--train-limit", "5"], "--train-limit must be at least 20"),
    "unknown-preset": (["--preset", "nope"], "unknown preset 'nope'"),
    "unknown-dataset": (["--dataset", "nope"], "unknown data set 'nope'"),
    "missing-data-dir": (["--data-dir", "{tmp}/no-data"], "data folder does not exist"),
    "out-holds-another-run": (["--out", "{tmp}/taken"], "holds another run"),
    "cuda-without-cuda": (["--device", "cuda"], "no CUDA"),
    "unknown-device": (["--device", "tpu"], "unknown device"),
}


@pytest.mark.usefixtures("real_data", "one_torch_thread")
@pytest.mark.parametrize("case", sorted(RUN_ERRORS))
def test_fmnist_run_bad_input_is_one_line(case, tmp_path, monkeypatch, capsys):
    if case == "cuda-without-cuda" and torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present here, so --device cuda is not an error")
    args, fragment = RUN_ERRORS[case]
    (tmp_path / "taken").mkdir()  # a folder holding another run's config
    (tmp_path / "taken" / "config.json").write_text(json.dumps(TrainConfig().to_dict()))
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    rc = main(["run", *(a.format(tmp=tmp_path) for a in args)])
    assert_one_line_error(capsys.readouterr().err, rc, fragment)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no run folder, nothing written


@pytest.mark.usefixtures("real_data")
def test_fmnist_run_bad_flag_values_in_a_real_process(tmp_path):
    """The installed command: a value argparse rejects, and one the config rejects; one line each."""
    proc = fmnist_cmd("run", "--epochs", "x", cwd=tmp_path)
    assert_one_line_error(proc.stderr, proc.returncode, "--epochs", "invalid int", "fmnist run --help")
    proc = fmnist_cmd("run", "--epochs", "-3", cwd=tmp_path, pin=True)
    assert_one_line_error(proc.stderr, proc.returncode, "--epochs must be positive")
    assert list(tmp_path.iterdir()) == []
