"""Meta-Neighborhoods (Shan, Li, Oliva, NeurIPS 2020) in PyTorch."""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "MetaNeighborhoods": "model",
    "MetaNeighborhoodsClassifier": "estimators",
    "MetaNeighborhoodsRegressor": "estimators",
    "ConfigError": "validation",  # the errors the README names, to catch without knowing the modules
    "CheckpointError": "checkpoint",
    "RunFolderError": "io",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    """Import torch and scikit-learn on first use only, so that ``meta-neighborhoods --help`` starts fast."""
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """What ``__getattr__`` exports lazily, listed as if imported (tab completion, ``dir``)."""
    return sorted({*globals(), *__all__})
