"""The ``fmnist`` command: one subcommand per stage, each registered by its own module.

Every user error (:class:`fmnist.errors.FmnistError`) ends as one line on stderr and exit
status 2; a missing optional dependency names the extra to install; an unexpected exception (a
bug) is one line too, with exit status 3 (``FMNIST_DEBUG=1`` re-raises it with its traceback). Heavy imports (torch)
happen inside the subcommands, so ``fmnist --help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import math
import os
import signal
import sys
import textwrap
import threading
from collections.abc import Callable, Sequence
from typing import NoReturn

from fmnist import __version__
from fmnist.errors import FmnistError

# Each module defines ``register(subparsers)``. Order is the data flow, as in ``--help``.
COMMAND_MODULES = (
    "fmnist.data.cli",
    "fmnist.run",
    "fmnist.train.cli",
    "fmnist.evaluate.cli",
    "fmnist.predict.cli",
    "fmnist.export.cli",
    "fmnist.serve.cli",
    "fmnist.bench.cli",
    "fmnist.viz.cli",
    "fmnist.audit.cli",
    "fmnist.sweep.cli",
)

# The commands with actions of their own: (one-line help, description, example) for ``fmnist NAME --help``.
GROUP_TEXTS = {
    "data": (
        "get, verify, describe and export the data",
        "Get the data files, verify them, summarise, export, draw the sprite.",
        "fmnist data fetch && fmnist data info",
    ),
    "viz": (
        "maps of the data set: PCA, t-SNE, UMAP of pixels or CNN features",
        "Pictures of the data. (The README's sprite is `fmnist data sprite`.)",
        "fmnist viz embed --method umap --out maps/",
    ),
    "bench": (
        "benchmarks: scikit-learn baselines, the CNN, one results table and dashboard",
        "Run the benchmarks and show their results; every action shares one results file.",
        "fmnist bench sklearn --quick && fmnist bench report",
    ),
}
HELP_WIDTH = 88  # descriptions in --help are wrapped to this width

EXTRAS = {
    "fastapi": "serve",
    "uvicorn": "serve",
    "multipart": "serve",
    "pydantic": "serve",
    "starlette": "serve",
    "threadpoolctl": "viz",
    "onnx": "export",
    "onnxruntime": "export",
    "onnxscript": "export",
    "sklearn": "bench",
    "dask": "bench",
    "distributed": "bench",
    "umap": "viz",
    "cleanlab": "audit",
    "optuna": "optuna",
}


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (with where to look) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        say_error(f"fmnist: error: {message} (see: {self.prog} --help)")
        sys.exit(2)


class Terminated(BaseException):
    """SIGTERM, raised as an exception so every ``finally`` and atomic write cleans up."""


def _raise_terminated(signum: int, _frame: object) -> None:
    raise Terminated(signum)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the examples' line breaks and show defaults (not a meaningless "default: None")."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="fmnist",
        description="A convolutional network for Fashion-MNIST: data, training, evaluation, use.",
        epilog="Example:\n  fmnist data fetch && fmnist run\n\nRun `fmnist COMMAND --help` for each command.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fmnist {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def say_error(message: str, limit: int = 400) -> None:
    """Print an error as exactly one line on stderr, however many lines the exception held."""
    line = " ".join(message.split())
    print(line if len(line) <= limit else line[: limit - 3] + "...", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        result = args.func(args)
        return int(result or 0)
    except FmnistError as exc:
        say_error(f"fmnist: error: {exc}")
        return exc.exit_code
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        extra = EXTRAS.get(top)
        hint = f"; install it with: pip install 'fmnist[{extra}]'" if extra else ""
        print(f"fmnist: error: missing Python package {top!r}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fmnist: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("fmnist: terminated", file=sys.stderr)
        return 143
    except BrokenPipeError:
        return 1
    except MemoryError:
        print("fmnist: error: out of memory; try a smaller --batch-size or model", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        say_error(f"fmnist: error: {where}{getattr(exc, 'strerror', None) or exc}")
        return 1
    except Exception as exc:  # a bug, not a user error: still one line, the traceback on request
        if os.environ.get("FMNIST_DEBUG"):
            raise
        say_error(
            f"fmnist: internal error: {type(exc).__name__}: {exc} (a bug: please report it; "
            "FMNIST_DEBUG=1 shows the traceback)"
        )
        return 3


def number(kind: type = float, lo: float | None = None, hi: float | None = None, *, above: bool = False):
    """An argparse type: a finite ``kind`` in [lo, hi] (``above``: strictly over ``lo``), else a one-line error."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not a{'n integer' if kind is int else ' number'}: {text!r}"
            ) from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if lo is not None and (value <= lo if above else value < lo):
            raise argparse.ArgumentTypeError(
                f"must be {'over' if above else 'at least'} {lo:g}, got {text!r}"
            )
        if hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"must be at most {hi:g}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


SEED = number(int, 0, 2**32 - 1)  # seeds: numpy and torch take [0, 2^32)


def add_command(sub, name: str, run: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    """Add the subcommand ``name`` that calls ``run(args)``; its ``--help`` is ``run``'s docstring.

    The docstring's first line is the one-line help, the paragraphs after it the description,
    and a last paragraph ``Example: ...`` the example: one place for what a command does.
    """
    help, description, example = command_texts(run)
    parser = _add_parser(sub, name, help, description, example)
    parser.set_defaults(func=run)
    return parser


def command_texts(run: Callable) -> tuple[str, str, str]:
    """(help, description, example) from a command function's docstring (see :func:`add_command`)."""
    paragraphs = [" ".join(p.split()) for p in inspect.cleandoc(run.__doc__ or "").split("\n\n")]
    if len(paragraphs) < 2 or not paragraphs[-1].startswith("Example: "):
        raise TypeError(
            f"{run.__name__}: its docstring needs a help line and a last 'Example: ...' paragraph"
        )
    return paragraphs[0], "\n\n".join(paragraphs[1:-1]), paragraphs[-1].removeprefix("Example: ")


def _add_parser(sub, name: str, help: str, description: str, example: str) -> argparse.ArgumentParser:
    wrapped = "\n\n".join(textwrap.fill(p, HELP_WIDTH) for p in description.split("\n\n") if p)
    return sub.add_parser(
        name,
        help=help,
        description=f"{wrapped}\n\nExample:\n  {example}",
        formatter_class=HelpFormatter,
    )


def config_from_args(cls: type, args: argparse.Namespace, **values):
    """A config dataclass from the parsed flags named like its fields; ``values`` set the others."""
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**(flags | values))


def add_group(sub, name: str):
    """A command with actions of its own (``fmnist data fetch``), its texts from GROUP_TEXTS: returns the actions' subparsers."""
    group = _add_parser(sub, name, *GROUP_TEXTS[name])
    return group.add_subparsers(dest=f"{name}_command", metavar="ACTION", required=True)


DEVICE_HELP = "where the model runs: auto (CUDA when present, else the CPU), cpu, cuda, cuda:N or mps"
# predict and serve: a request is a few pictures, which a small CNN classifies in milliseconds on the CPU.
CPU_BY_DEFAULT = "why cpu: a few pictures at a time need no GPU, and ONNX models run on the CPU only"
DATA_DIR_HELP = (
    "folder holding the four IDX files (.gz or raw); default: $FMNIST_DATA_DIR, the cache, "
    "the system copy (skipped when $FMNIST_NO_SYSTEM_DATA=1), Keras' cache ($KERAS_HOME or ~/.keras)"
)


def add_device_arg(parser: argparse.ArgumentParser, default: str = "auto", note: str = "") -> None:
    """``--device``, one help text for every command; ``note``: what it is for, or why the default is not auto."""
    parser.add_argument("--device", default=default, help=DEVICE_HELP + (f" ({note})" if note else ""))


def add_data_dir_arg(parser: argparse.ArgumentParser, use: str = "", download: bool = True) -> None:
    """``--data-dir``, one help text and one default (None: the usual search) for every command."""
    parser.add_argument("--data-dir", default=None, help=data_dir_help(use, download))


def data_dir_help(use: str = "", download: bool = True) -> str:
    """The ``--data-dir`` help: where the data is looked for, then whether it is downloaded and what for.

    ``use`` says what the command reads the data for; ``download=False`` for one that never downloads.
    """
    where = ", then download" if download else "; never downloaded here"
    return DATA_DIR_HELP + where + (f"; {use}" if use else "")
