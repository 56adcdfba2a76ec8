"""Grid expansion, the one home for it: every combination of a few lists of values.

Used by ``fmnist sweep`` (a TOML ``[grid]``) and by the scikit-learn baselines (the README's
``baselines.json``); each caller checks its own file's shape and names the file in its errors.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any


def expand(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """One dict per pick from the Cartesian product of the value lists, keys in ``grid``'s order.

    The last key varies fastest (``itertools.product`` order), so a grid written in the order a
    reader expects expands in that order; an empty grid is one empty combination.
    """
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))]
