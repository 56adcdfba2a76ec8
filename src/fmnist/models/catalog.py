"""What each named architecture is and which knobs it takes: plain data, no torch import.

The config and the CLI read this table (so ``--help`` stays fast); ``registry`` adds the builders.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelEntry:
    summary: str
    knobs: tuple[str, ...] = ()  # keyword arguments a user may set (e.g. width, depth)
    defaults: dict = field(default_factory=dict)


CATALOG: dict[str, ModelEntry] = {
    "tutorial": ModelEntry("the README table's '2 Conv+pooling' net (reported 91.6%)", ("dropout",)),
    "fastcnn": ModelEntry(
        "the CPU default: 4 conv-BN layers (+ depth - 1 at 7x7), 34k parameters",
        ("width", "depth"),
        {"width": 16, "depth": 1},
    ),
    "resnet": ModelEntry(
        "pre-activation residual net for GPUs, width and depth configurable",
        ("width", "depth", "dropout"),
        {"width": 64, "depth": 2},
    ),
}
