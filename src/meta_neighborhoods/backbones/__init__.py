"""Backbone registry: feature extractors mu_theta that feed the cosine classifier.

The backbone contract: a constructor ``name(in_channels, norm_layer, **kwargs)`` registered with
``@register_backbone`` (one file in this package plus its import below), whose
module maps (B, C, H, W) to (B, out_features) through global average pooling and ends in a BatchNorm
without ReLU, so features are roughly Gaussian (Sec. 2.3) and the dictionary keys can be initialised from
a Gaussian. It exposes ``out_features`` and ``num_stages``. BatchNorm layers are built by a caller-supplied
``norm_layer(num_channels, last_in_stage)``, ``last_in_stage`` True for exactly one BN per stage (the
final BN closes the last one), so iFiLM can wrap all of them or only the last of each stage. The tests
iterate the registry: a new backbone needs no test edit.
"""

from . import convnet4, densenet, resnet  # noqa: F401 (each registers its backbones)
from .base import NormLayer, available_backbones, batch_norm, create_backbone, init_weights, register_backbone

__all__ = ["NormLayer", "available_backbones", "batch_norm", "create_backbone", "init_weights", "register_backbone"]
