"""What importing costs: ``fmnist --help`` loads no heavy package, and the ONNX path loads no torch.

Each check runs in a fresh interpreter, since the test session has long imported everything.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Packages that building the parser must not import: torch and the optional extras (each costs from
# tens of milliseconds to a second), matplotlib, Pillow and OpenCV (the pictures), tqdm (the download bar).
HEAVY = (
    "torch",
    "sklearn",
    "scipy",
    "umap",
    "dask",
    "distributed",
    "fastapi",
    "uvicorn",
    "onnx",
    "onnxruntime",
    "matplotlib",
    "PIL",
    "tqdm",
    "cv2",
)


def loaded_after(code: str) -> list[str]:
    """The HEAVY top-level packages in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    script = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import sys
        print(" ".join(sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_building_the_parser_imports_no_heavy_package():
    assert loaded_after("from fmnist.cli import build_parser; build_parser()") == []


def test_every_command_help_imports_no_heavy_package():
    """``fmnist --help`` and each ``fmnist COMMAND --help``: argparse prints and exits, nothing else loads."""
    code = """
        import contextlib, io
        from fmnist.cli import COMMAND_MODULES, build_parser, main
        commands = [a for a in build_parser()._subparsers._group_actions[0].choices]
        assert len(commands) >= len(COMMAND_MODULES), commands
        for argv in [["--help"]] + [[name, "--help"] for name in commands]:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
                main(argv)
    """
    assert loaded_after(code) == []


def test_the_onnx_serving_path_imports_no_torch():
    """What ``fmnist serve --backend onnx`` and ``fmnist predict model.onnx`` import, before any model."""
    code = """
        import fmnist.export.onnx_runtime, fmnist.predict.predict, fmnist.serve.app, fmnist.serve.cli
        import fmnist.models.inputs, fmnist.evaluate.record, fmnist.train.device
        fmnist.train.device.check_device_name("cuda:1")
    """
    assert "torch" not in loaded_after(code)
