"""Models: named architectures, checkpoint files, model inputs, inference, accuracy (imported lazily)."""

from fmnist._lazy import lazy_getattr

_MODULES = {  # module -> the public names it is the home of
    "fmnist.models.registry": ("MODELS", "build_model", "build_from_config", "param_count"),
    "fmnist.models.inference": ("LoadedModel", "load_model", "logits_of"),
    "fmnist.models.inputs": ("preprocess", "preprocess_numpy"),
    "fmnist.models.scoring": ("accuracy",),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
