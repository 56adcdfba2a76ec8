"""Every command's ``--help`` comes from its function's docstring: a help line, a description, an example."""

from __future__ import annotations

import argparse

import pytest

from fmnist.cli import build_parser, command_texts


def leaf_parsers(
    parser: argparse.ArgumentParser, prefix: str = "fmnist"
) -> dict[str, argparse.ArgumentParser]:
    """``{"fmnist data fetch": parser, ...}``: the commands a user runs, actions of groups included."""
    found = {}
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for name, child in action.choices.items():
            if child._subparsers:
                found |= leaf_parsers(child, f"{prefix} {name}")
            else:
                found[f"{prefix} {name}"] = child
    return found


def test_every_command_has_help_description_and_an_example_of_itself():
    leaves = leaf_parsers(build_parser())
    assert {"fmnist data fetch", "fmnist train", "fmnist bench sklearn", "fmnist serve"} <= set(leaves)
    for command, parser in leaves.items():
        run = parser.get_default("func")
        assert callable(run), command
        help_line, description, example = command_texts(run)
        assert help_line and description, command
        assert f"{command} " in f"{example} ", (command, example)  # the example runs this very command
        assert f"Example:\n  {example}" in parser.description


def test_a_command_without_an_example_is_a_programming_error():
    def cmd_nothing(args) -> int:
        """do nothing

        It has no example paragraph.
        """
        return 0

    with pytest.raises(TypeError, match="Example"):
        command_texts(cmd_nothing)
