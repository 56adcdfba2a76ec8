"""The benchmark grid: the README's ``benchmark/baselines.json``, shipped unchanged, expanded into jobs.

The file maps each classifier to a list of ``{parameter: [values]}`` blocks; a configuration is one
pick from the Cartesian product of every value list, exactly as the original ``runner.py`` expanded
it (so the MLP block, which holds two parameters, gives 2 x 4 configurations). The shipped grid
gives 143 configurations. Parameters keep the file's spelling (``"log"``, ``"(10,10,)"``);
:mod:`fmnist.baselines.estimators` maps them to today's scikit-learn.

``additions.json`` (same format) holds a few rows today's scikit-learn has that the 2017 grid lacks
(``--additions``); their configurations, and the rows they give, are marked ``addition``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmnist import grid as grids
from fmnist.errors import ConfigError

GRID_FILE = Path(__file__).with_name("baselines.json")  # verbatim copy of the README's file
EXPECTED_CONFIGS = 143  # what GRID_FILE expands to
ADDITIONS_FILE = Path(__file__).with_name("additions.json")  # today's rows beside 2017's, one line each


@dataclass(frozen=True, eq=True)
class BenchConfig:
    """One classifier with one set of parameters, in the grid file's spelling."""

    name: str  # scikit-learn class name from the grid, or "module:Class" for any importable estimator
    parameters: dict[str, Any] = field(hash=False)  # original spelling, e.g. {"loss": "log"}
    addition: bool = False  # from additions.json: today's scikit-learn, not the 2017 grid

    @property
    def family(self) -> str:
        """The estimator class name: the unit of ``--only`` and of "best per family"."""
        return self.name.rsplit(":", 1)[-1]

    @property
    def key(self) -> str:
        """Stable identity of the configuration: name plus its parameters as sorted JSON."""
        return f"{self.name} {json.dumps(self.parameters, sort_keys=True)}"


def load_grid(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Read a grid file (default: the shipped one) and check its shape; a bad file is a ConfigError."""
    path = Path(path) if path is not None else GRID_FILE
    try:
        grid = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: grid file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the grid file ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    classifiers = grid.get("classifiers") if isinstance(grid, dict) else None
    if not isinstance(classifiers, dict) or not classifiers:
        raise ConfigError(f"{path}: a grid needs a non-empty 'classifiers' object")
    if not isinstance(grid.get("common", {}), dict):
        raise ConfigError(f"{path}: 'common' must be an object of parameters")
    for name, blocks in classifiers.items():
        ok = isinstance(blocks, list) and all(
            isinstance(b, dict) and all(isinstance(v, list) and v for v in b.values()) for b in blocks
        )
        if not ok:
            raise ConfigError(f"{path}: {name} must be a list of {{parameter: [values]}} objects")
        named = [p for block in blocks for p in block]
        if len(named) != len(set(named)):
            raise ConfigError(f"{path}: {name} names a parameter in two blocks")
    return grid


def expand(grid: dict[str, Any], addition: bool = False) -> list[BenchConfig]:
    """Every configuration of ``grid``, in file order (the original runner's order)."""
    common = grid.get("common", {})
    return [
        BenchConfig(name, {**picked, **common}, addition)
        for name, blocks in grid["classifiers"].items()
        for picked in grids.expand({p: values for block in blocks for p, values in block.items()})
    ]


def families(configs: Sequence[BenchConfig]) -> list[str]:
    """Family names in first-seen order."""
    return list(dict.fromkeys(c.family for c in configs))


def _norm(family: str) -> str:
    family = family.strip().lower()
    return family[: -len("classifier")] if family.endswith("classifier") else family


def select(configs: Sequence[BenchConfig], only: Sequence[str]) -> list[BenchConfig]:
    """The configurations of the families in ``only`` (case-insensitive; "Classifier" may be left off)."""
    if not only:
        return list(configs)
    known = {_norm(f): f for f in families(configs)}
    wanted = set()
    for item in only:
        for part in filter(None, (p.strip() for p in item.split(","))):
            if _norm(part) not in known:
                raise ConfigError(f"unknown family {part!r}; known: {', '.join(known.values())}")
            wanted.add(known[_norm(part)])
    return [c for c in configs if c.family in wanted]
