"""Models: named architectures and self-describing checkpoints."""

from fmnist.models.checkpoint import LoadedModel, load_model, preprocess
from fmnist.models.registry import MODELS, build_model, param_count

__all__ = ["MODELS", "LoadedModel", "build_model", "load_model", "param_count", "preprocess"]
