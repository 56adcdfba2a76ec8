"""Models: named architectures and self-describing checkpoints (names imported lazily)."""

from fmnist._lazy import lazy_getattr

_EXPORTS = {
    "MODELS": "fmnist.models.registry",
    "build_model": "fmnist.models.registry",
    "param_count": "fmnist.models.registry",
    "LoadedModel": "fmnist.models.checkpoint",
    "load_model": "fmnist.models.checkpoint",
    "preprocess": "fmnist.models.checkpoint",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
