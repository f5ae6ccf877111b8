"""The backbone registry, the default norm layer and the weight initialisation every backbone shares."""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

from ..validation import ConfigError

NormLayer = Callable[[int, bool], nn.Module]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a backbone constructor under its function name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def available_backbones() -> list[str]:
    return sorted(_REGISTRY)


def create_backbone(name: str, in_channels: int = 3, norm_layer: NormLayer | None = None,
                    **kwargs) -> nn.Module:
    """Build a registered backbone; `kwargs` go to its constructor (e.g. `stem_width`)."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown backbone {name!r}; available: {', '.join(available_backbones())}")
    return _REGISTRY[name](in_channels=in_channels, norm_layer=norm_layer or batch_norm, **kwargs)


def batch_norm(num_channels: int, last_in_stage: bool = False) -> nn.Module:
    """Default norm layer; `last_in_stage` only matters to replacements such as iFiLM."""
    return nn.BatchNorm2d(num_channels)


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convs (ReLU nets), identity-initialised BatchNorms."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
