"""What every loaded model (torch or ONNX) exposes from its saved record; no torch import."""

from __future__ import annotations


class RecordFields:
    """Mixin for objects with a ``record`` dict: class names and the normalisation to feed them."""

    record: dict

    @property
    def classes(self) -> list[str]:
        return self.record["classes"]

    @property
    def mean(self) -> float:
        return self.record["mean"]

    @property
    def std(self) -> float:
        return self.record["std"]
