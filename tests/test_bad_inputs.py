"""Bad inputs (issue #13): the fast subset of ``benchmarks/bad_inputs.py``, as tests.

Each case is a real ``fmnist`` subprocess fed a hostile or careless input (a model file whose
unpickling would run ``touch MARKER``, ``--lr inf``, ``--seed -1``, a TOML ``seed = -1``, an export
over the model it reads, ``serve --max-upload-mb nan``, a decompression-bomb PNG posted to a running
server, ...). The promise under test: one clear line on stderr and a non-zero exit, no traceback,
the marker never appears, no file of the user's changes, no temp file is left. The full table
(about 250 cases) is ``python benchmarks/bad_inputs.py``; these are the ones marked ``quick``, run
two at a time once per module, then asserted one test per case.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_harness():
    spec = importlib.util.spec_from_file_location("bad_inputs", ROOT / "benchmarks" / "bad_inputs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bad_inputs"] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


bad_inputs = _load_harness()
QUICK = [case for case in bad_inputs.build_cases() if case.quick]
QUICK_PROBES = [p for p in bad_inputs.build_probes() if p.name in ("decompression-bomb", "head-health")]
NAMES = [case.name for case in QUICK] + [f"serve (HTTP)/{p.name}" for p in QUICK_PROBES]


@pytest.fixture(scope="module")
def records(fashion_gz_dir) -> dict[str, dict]:
    """Every quick case's record, by name (one scratch folder, one tiny trained run, 2 cases at once).
    The harness reads the real data (its four .gz) wherever `fmnist data fetch` put it, not only from
    the Debian copy that is its command-line default."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bad_inputs, "DATA_DIR", fashion_gz_dir)
        got, _meta = bad_inputs.run_all(QUICK, QUICK_PROBES, jobs=2)
    return {rec["name"]: rec for rec in got}


def test_the_quick_subset_covers_the_findings():
    """The hostile pickle for each command that reads a model, and the bad numbers the issue names."""
    names = set(NAMES)
    for name in (
        "evaluate/hostile-model",
        "predict/hostile-model",
        "export/hostile-model",
        "train/resume-hostile-checkpoint",
        "export/out-is-the-model",
        "train/seed=-1",
        "train/lr=inf",
        "train/toml-seed-negative",
        "serve/max-upload-mb=nan",
        "serve (HTTP)/decompression-bomb",
    ):
        assert name in names


def test_the_line_judge():
    """What counts as one clear line: a redrawn progress bar is not a line; an internal error is not clear."""
    case = bad_inputs.Case("x/y", [])
    proc = {"exit": 2, "timed_out": False, "seconds": 1.0, "stdout": "", "notes": []}
    ok, problems = bad_inputs.judge(
        case, {**proc, "stderr": "\r 50%|###  |\r          \rfmnist: error: bad\n"}
    )
    assert ok["one_line"] and not problems
    for stderr in (
        "fmnist: internal error: ValueError: x (a bug: please report it)\n",
        "Traceback (most recent call last):\n  File x\nValueError: x\n",
        "fmnist: error: one\nfmnist: error: two\n",
        "",
    ):
        seen, problems = bad_inputs.judge(case, {**proc, "stderr": stderr})
        assert not seen["one_line"] and problems
    seen, problems = bad_inputs.judge(case, {**proc, "exit": 0, "stderr": ""})
    assert "exit 0 (accepted)" in problems


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_gets_one_line_and_loses_nothing(records, name):
    rec = records[name]
    context = f"{name}: {rec['problems']}; stderr: {rec.get('stderr_head') or rec.get('first_line')}"
    assert rec["one_line"], context
    assert not rec["traceback"], context
    assert not rec["code_ran"], context
    assert not rec["data_lost"], context
    assert not rec["temp_left"], context
    assert rec["passed"], context
