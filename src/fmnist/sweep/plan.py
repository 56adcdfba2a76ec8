"""A sweep plan from TOML: a base config and a grid, expanded into named runs.

[base]            # any `fmnist train` config keys, and optionally preset = "cpu-fast"
preset = "cpu-fast"
epochs = 3
[grid]            # every combination of these lists is one run
seed = [0, 1, 2]
lr = [0.05, 0.1]

For ``--search optuna`` a [search] table replaces [grid]: each knob is a list of choices (categorical)
or a range table ``{low = 0.01, high = 0.3, log = true}`` (integers if both bounds are integers); a
[grid] table is read as categorical choices when there is no [search].
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from fmnist import grid as grids
from fmnist.errors import ConfigError
from fmnist.train.config import TrainConfig, make_config, read_toml
from fmnist.train.run_folder import MACHINE_KNOBS


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
    if "search" in doc:
        raise ConfigError(f"{path}: [search] is read by --search optuna; the grid search reads [grid]")
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
        check_ranked_on_validation(path, cfg)
        runs.append(PlannedRun(run_name(params), params, cfg))
    return runs


def check_ranked_on_validation(path: str | Path, cfg: TrainConfig) -> None:
    """A sweep ranks (and ensembles) its runs by validation accuracy, so every run must hold a split out;
    `cpu-60s` trains on every image, and a sweep on it would rank NaNs."""
    if cfg.val_size == 0:
        raise ConfigError(
            f"{path}: the sweep ranks runs by validation accuracy, so val_size must be > 0 "
            f"(the {cfg.preset or 'base'} config holds no split out: add val_size = 5000 to [base])"
        )


@dataclass(frozen=True)
class Knob:
    """One searched config key: ``choices`` (categorical) or a ``low``..``high`` range."""

    name: str
    choices: tuple[Any, ...] | None = None
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False

    @property
    def is_int(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)

    def spec(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class SearchPlan:
    """A base config and the knobs an Optuna study searches; ``config`` makes one trial's config."""

    preset: str | None
    base: dict[str, Any]
    knobs: tuple[Knob, ...]
    overrides: dict[str, Any]

    def config(self, params: dict[str, Any]) -> TrainConfig:
        return make_config(self.preset, **{**self.base, **params, **self.overrides})

    def signature(self) -> dict[str, Any]:
        """What a study's trials depend on (machine knobs aside): a resumed study must have the same."""
        cfg = self.config({}).to_dict()
        base = {k: v for k, v in cfg.items() if k not in (*MACHINE_KNOBS, "preset")}
        return json.loads(json.dumps({"base": base, "space": {k.name: k.spec() for k in self.knobs}}))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_knob(where: str, name: str, spec: Any) -> Knob:
    """A [search] entry: a non-empty list of scalars, or ``{low, high[, log]}``; else one ConfigError."""
    if isinstance(spec, list):
        if not spec or not all(isinstance(v, str | int | float | bool) for v in spec):
            raise ConfigError(f"{where}: knob {name!r} must be a non-empty list of numbers/strings/booleans")
        return Knob(name, choices=tuple(spec))
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: knob {name!r} must be a list of choices or a {{low, high, log}} table")
    extra = set(spec) - {"low", "high", "log"}
    if extra or "low" not in spec or "high" not in spec:
        raise ConfigError(f"{where}: knob {name!r} range needs exactly low, high and optionally log")
    low, high, log = spec["low"], spec["high"], spec.get("log", False)
    if not (_number(low) and _number(high)) or not isinstance(log, bool):
        raise ConfigError(f"{where}: knob {name!r}: low and high must be numbers, log true or false")
    if low > high:
        raise ConfigError(f"{where}: knob {name!r}: low {low} > high {high}")
    if log and low <= 0:
        raise ConfigError(f"{where}: knob {name!r}: a log range needs low > 0 (got {low})")
    return Knob(name, low=low, high=high, log=log)


def load_search(path: str | Path, **overrides: Any) -> SearchPlan:
    """Read [base] and [search] (or [grid] as choices) for an Optuna search; every value the search may
    pick (each choice, each range's ends) is validated as a config before anything runs."""
    path = Path(path)
    doc = read_toml(path, "sweep file")
    unknown = set(doc) - {"base", "grid", "search"}
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {', '.join(sorted(unknown))}; use [base] and [search]")
    if "search" in doc and "grid" in doc:
        raise ConfigError(f"{path}: give [search] or [grid], not both, for --search optuna")
    table = doc.get("search", doc.get("grid"))
    if not table:
        raise ConfigError(f"{path}: --search optuna needs a [search] table of knobs")
    base = dict(doc.get("base", {}))
    preset = base.pop("preset", None)
    known = {f.name for f in fields(TrainConfig)}
    knobs = []
    for name in sorted(table):
        if name not in known or name in (*MACHINE_KNOBS, "preset"):
            raise ConfigError(f"{path}: unknown knob {name!r} in the search table")
        knobs.append(parse_knob(str(path), name, table[name]))
    plan = SearchPlan(preset, base, tuple(knobs), {k: v for k, v in overrides.items() if v is not None})
    check_ranked_on_validation(path, plan.config({}))
    for knob in knobs:
        for value in knob.choices if knob.choices is not None else (knob.low, knob.high):
            try:
                plan.config({knob.name: value})
            except ConfigError as exc:
                raise ConfigError(f"{path}: knob {knob.name!r} = {value!r}: {exc}") from None
    return plan


@dataclass(frozen=True)
class SweepOptions:
    """How a sweep's runs train, whatever chooses them (the grid or Optuna): the Dask scheduler (None: a
    local cluster of ``workers`` processes with ``threads`` torch threads each), the ensemble size, the data."""

    scheduler: str | None = None
    workers: int = 2
    threads: int = 1
    ensemble: int = 0
    data_dir: str | None = None


DEFAULT_OPTIONS = SweepOptions()
