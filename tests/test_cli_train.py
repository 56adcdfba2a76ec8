"""``fmnist train``, ``fmnist run`` and the train command's help, through the real command line.

Nonsense configs end as one ``fmnist: error:`` line on stderr (no traceback, non-zero exit); the
config (preset < TOML < flags) is printed at start and saved as config.json with the same values;
``fmnist run`` goes from data to a test accuracy inside a band around the measured one. Real
Fashion-MNIST (wherever `fmnist data fetch` put it), tiny settings: about 40 s.
"""

from __future__ import annotations

import ast
import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from conftest import assert_one_line_error, fmnist_cmd, pinned_to_one_cpu
from fmnist.cli import main
from fmnist.train.config import AVX2_TWIN, PRESETS, TrainConfig
from fmnist.train.device import default_preset, preset_size_note

pytestmark = pytest.mark.usefixtures("real_data", "one_torch_thread")


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
def error_runs(tmp_path_factory, fashion_dir, data_cache) -> dict:
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

    env = {"FMNIST_DATA_DIR": str(fashion_dir), "FMNIST_CACHE": str(data_cache)}

    def run(args: list[str]):
        return fmnist_cmd("train", *(a.format(tmp=tmp) for a in args), env=env, cwd=tmp)

    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(cases, pool.map(run, (args for args, _ in cases.values())), strict=True))
    results["_tmp"] = tmp
    return results


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_nonsense_config_is_one_line_error(case, error_runs):
    if case == "cuda-without-cuda" and CUDA:
        pytest.skip("a CUDA GPU is present here, so --device cuda is not an error")
    proc = error_runs[case]
    assert_one_line_error(proc.stderr, proc.returncode, ERROR_CASES[case][1])


@pytest.mark.parametrize("case", sorted(MORE_ERROR_CASES))
def test_more_nonsense_configs_in_process(case, error_runs, capsys, monkeypatch):
    args, fragment = MORE_ERROR_CASES[case]
    monkeypatch.chdir(error_runs["_tmp"])
    rc = main(["train", *(a.format(tmp=error_runs["_tmp"]) for a in args)])
    assert_one_line_error(capsys.readouterr().err, rc, fragment)


def test_refused_runs_leave_the_other_run_alone(error_runs):
    tmp = error_runs["_tmp"]
    assert sorted(p.name for p in (tmp / "taken").iterdir()) == ["config.json"]
    assert list((tmp / "empty").iterdir()) == []
    assert not (tmp / "runs").exists()  # no default run folder made for a refused config


# ---------------------------------------------------------------- config: TOML, presets, flags, printed, saved


def test_preset_toml_and_flags_apply_in_order_printed_and_saved(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[train]\nmodel = "fastcnn"\nwidth = 8\nepochs = 3\nlr = 0.01\nbatch_size = 64\n')
    run = tmp_path / "run"
    proc = fmnist_cmd(
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
    )
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((run / "config.json").read_text())
    shown = printed_config(proc.stdout)
    assert shown == saved  # printed at start = saved beside the outputs
    assert saved["preset"] == "tutorial"
    assert saved["optimizer"] == "adamw"  # the README's tutorial recipe (AdamW, cosine) over the defaults
    assert saved["schedule"] == "cosine"
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
    again = fmnist_cmd("train", "--out", str(run), "--resume", "--threads", "1")
    assert again.returncode == 0, again.stderr
    resumed = printed_config(again.stdout)
    assert {k: v for k, v in resumed.items() if k != "threads"} == {
        k: v for k, v in saved.items() if k != "threads"
    }
    assert "after epoch 1/1" in again.stdout


# ---------------------------------------------------------------- fmnist run, end to end


# Test accuracy of `fmnist run --train-limit 10000 --epochs 2` as an AVX2-only CPU runs it (cpu-fast-avx2:
# fastcnn width 16, whitened, flips, fp32; 9,000 training images, 70 steps), one thread, seed 0: 0.7702
# measured with oneDNN's AVX-512 kernels (this dev box, AMD Zen 5) and 0.7662 with its AVX2 kernels
# (ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2). Seeds 0-4 give 0.768-0.814 (sd 0.02): this recipe
# (lr 0.2) is made for 55,000 images and swings on a few thousand; at 4,000 images (the old setting,
# "about 0.4") seeds spread from 0.38 to 0.55 and no band could hold. The margin, 0.03, is 7x the
# kernel-to-kernel difference and 1.5 sd of the seeds: a 3-point regression fails. Remeasure when the
# recipe changes on purpose.
RUN_ACCURACY, RUN_MARGIN = 0.770, 0.03


def test_fmnist_run_end_to_end(tmp_path, monkeypatch, capsys):
    """``fmnist run`` (in-process, one CPU): data summary, the machine's recipe, training, evaluation."""
    import fmnist.train.loop as loop

    # As on an AVX2-only CPU: default_preset picks cpu-fast-avx2 and autocast stays off, so the figure is
    # the same on the three kinds of CI machine (AVX512-BF16, AMX, AVX2 only).
    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: False)
    run = tmp_path / "main"
    with pinned_to_one_cpu():  # `fmnist run` has no --threads: it uses every CPU it may run on
        rc = main(["run", "--train-limit", "10000", "--epochs", "2", "--out", str(run), "--device", "cpu"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "Traceback" not in err
    assert "Fashion-MNIST: 70,000 images, verified" in out  # the data summary comes first
    assert f"run folder: {run}" in out
    match = re.search(r"^test accuracy: (0\.\d{4})", out, flags=re.M)
    assert match, out
    accuracy = float(match.group(1))
    assert RUN_ACCURACY - RUN_MARGIN <= accuracy <= RUN_ACCURACY + RUN_MARGIN, accuracy  # chance is 0.1
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
    saved = json.loads((run / "config.json").read_text())
    assert saved["preset"] == "cpu-fast-avx2"  # no native bf16 (patched above): the fp32-sized recipe
    assert (saved["train_limit"], saved["epochs"]) == (10_000, 2)


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


def test_help_through_the_installed_command():
    proc = fmnist_cmd("train", "--help")
    assert proc.returncode == 0 and "Example" in proc.stdout and not proc.stderr
