"""The published figures: the best configuration of each family in the data set's paper, Table 3.

Xiao, Rasul, Vollgraf (2017), "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
Learning Algorithms", arXiv:1708.07747, Table 3: Fashion-MNIST test accuracy of the best
configuration of each scikit-learn family, trained on all 60,000 images (mean over repeats). Each
entry names its configuration in the grid file's spelling (``"(100,)"``, ``"deviance"``, floats as
the file writes them), so ``--best`` picks exactly these rows out of the shipped grid and the report
puts the published figure beside the measured one. Only the Fashion-MNIST column is kept here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fmnist.baselines.grid import BenchConfig
from fmnist.errors import ConfigError

PAPER = "Xiao, Rasul, Vollgraf 2017, arXiv:1708.07747, Table 3"
PUBLISHED_DATASET = "fashion"  # the column of Table 3 kept here
PUBLISHED_TRAIN = 60_000  # the paper trained every row on all training images


@dataclass(frozen=True)
class Published:
    """One row of Table 3: a grid configuration and its published test accuracy (a fraction)."""

    name: str
    parameters: dict[str, Any] = field(hash=False)
    accuracy: float

    @property
    def key(self) -> str:
        return BenchConfig(self.name, self.parameters).key


# In Table 3's order (best first). Parameters exactly as baselines.json spells them.
TABLE3: tuple[Published, ...] = (
    Published("SVC", {"C": 10.0, "kernel": "rbf"}, 0.897),
    Published(
        "GradientBoostingClassifier", {"loss": "deviance", "n_estimators": 100, "max_depth": 10}, 0.880
    ),
    Published(
        "RandomForestClassifier", {"criterion": "entropy", "max_depth": 100, "n_estimators": 100}, 0.873
    ),
    Published("MLPClassifier", {"activation": "relu", "hidden_layer_sizes": "(100,)"}, 0.871),
    Published("KNeighborsClassifier", {"n_neighbors": 5, "weights": "distance", "p": 1}, 0.854),
    Published("LogisticRegression", {"penalty": "l1", "C": 1.0, "multi_class": "ovr"}, 0.842),
    Published("LinearSVC", {"loss": "hinge", "penalty": "l2", "C": 1.0, "multi_class": "ovr"}, 0.836),
    Published("SGDClassifier", {"loss": "hinge", "penalty": "l2"}, 0.819),
    Published("DecisionTreeClassifier", {"criterion": "entropy", "splitter": "best", "max_depth": 10}, 0.798),
    Published("Perceptron", {"penalty": "l1"}, 0.782),
    Published("PassiveAggressiveClassifier", {"C": 1.0}, 0.776),
    Published("ExtraTreeClassifier", {"criterion": "gini", "splitter": "best", "max_depth": 10}, 0.775),
    Published("GaussianNB", {"priors": [0.1] * 10}, 0.511),
)
_BY_KEY = {p.key: p for p in TABLE3}
_BY_FAMILY = {p.name: p for p in TABLE3}


def best_configs(configs: Sequence[BenchConfig]) -> list[BenchConfig]:
    """The grid's configuration for each Table 3 row, in the table's order; a missing one is a ConfigError."""
    by_key = {c.key: c for c in configs}
    missing = [f"{p.name} {json.dumps(p.parameters)}" for p in TABLE3 if p.key not in by_key]
    if missing:
        raise ConfigError(f"--best: the grid lacks Table 3's {'; '.join(missing)}")
    return [by_key[p.key] for p in TABLE3]


def published_for(row: dict) -> Published | None:
    """The Table 3 entry of a result row's configuration (Fashion-MNIST, 2017 grid rows only), else None."""
    if (
        row.get("dataset") != PUBLISHED_DATASET
        or row.get("addition")
        or row.get("source", "sklearn") != "sklearn"
    ):
        return None
    return _BY_KEY.get(BenchConfig(row["name"], row.get("parameters", {})).key)


def published_family_best(family: str) -> Published | None:
    """Table 3's best configuration of a family (by class name), else None."""
    return _BY_FAMILY.get(family)
