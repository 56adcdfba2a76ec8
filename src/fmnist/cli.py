"""The ``fmnist`` command: one subcommand per stage, each registered by its own module.

Every user error (:class:`fmnist.errors.FmnistError`) ends as one line on stderr and exit
status 2; a missing optional dependency names the extra to install. Heavy imports (torch)
happen inside the subcommands, so ``fmnist --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

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

EXTRAS = {
    "fastapi": "serve",
    "uvicorn": "serve",
    "multipart": "serve",
    "onnx": "export",
    "onnxruntime": "export",
    "onnxscript": "export",
    "sklearn": "bench",
    "dask": "bench",
    "distributed": "bench",
    "umap": "viz",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the examples' line breaks and show defaults (not a meaningless "default: None")."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fmnist",
        description="A convolutional network for Fashion-MNIST: data, training, evaluation, use.",
        epilog="Example:\n  fmnist data fetch && fmnist run\n\nRun `fmnist COMMAND --help` for each command.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fmnist {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("fmnist"):
                continue  # a stage not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        result = args.func(args)
        return int(result or 0)
    except FmnistError as exc:
        print(f"fmnist: error: {exc}", file=sys.stderr)
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
    except BrokenPipeError:
        return 1
    except (OSError, MemoryError) as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"fmnist: error: {where}{getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 1


def add_command(sub, name: str, help: str, description: str, example: str) -> argparse.ArgumentParser:
    """Add one subcommand with its one-line help, a description and an example in ``--help``."""
    return sub.add_parser(
        name,
        help=help,
        description=f"{description}\n\nExample:\n  {example}",
        formatter_class=HelpFormatter,
    )


def add_group(sub, name: str, help: str, description: str, example: str):
    """A command with actions of its own (``fmnist data fetch``): returns the actions' subparsers."""
    group = add_command(sub, name, help, description, example)
    return group.add_subparsers(dest=f"{name}_command", metavar="ACTION", required=True)
