"""A sweep plan from TOML: a base config and a grid, expanded into named runs.

[base]            # any `fmnist train` config keys, and optionally preset = "cpu-fast"
preset = "cpu-fast"
epochs = 3
[grid]            # every combination of these lists is one run
seed = [0, 1, 2]
lr = [0.05, 0.1]
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmnist import grid as grids
from fmnist.errors import ConfigError
from fmnist.train.config import TrainConfig, make_config, read_toml


@dataclass(frozen=True)
class PlannedRun:
    name: str  # folder name, e.g. "lr=0.1,seed=2-1a2b3c"
    params: dict[str, Any]  # the grid values of this run
    config: TrainConfig


def run_name(params: dict[str, Any]) -> str:
    label = ",".join(f"{k}={v}" for k, v in sorted(params.items())) or "base"
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:6]
    safe = "".join(c if c.isalnum() or c in "=,.-_" else "_" for c in label)[:80]
    return f"{safe}-{digest}"


def load_plan(path: str | Path, **overrides: Any) -> list[PlannedRun]:
    """Expand the TOML at ``path`` into runs; every config is validated before anything runs."""
    path = Path(path)
    doc = read_toml(path, "sweep file")
    unknown = set(doc) - {"base", "grid"}
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {', '.join(sorted(unknown))}; use [base] and [grid]")
    base = dict(doc.get("base", {}))
    grid = doc.get("grid", {})
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: grid key {key!r} must be a non-empty list")
    preset = base.pop("preset", None)
    runs = []
    for params in grids.expand({k: grid[k] for k in sorted(grid)}):
        cfg = make_config(
            preset, **{**base, **params, **{k: v for k, v in overrides.items() if v is not None}}
        )
        runs.append(PlannedRun(run_name(params), params, cfg))
    return runs
