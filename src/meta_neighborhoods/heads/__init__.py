"""Heads f_phi: the part of the model finetuned for each input. The contract and the fast-path registry are in
``base.py``; each head lives in its own module with its fast path. A new head: one module, one import here."""

from .base import (FAST_PATHS, Head, adapted_parameter_names, decayed_parameter_names, fast_path, fast_path_for,
                   last_layer_names, takes_top_k)
from .mlp import LinearHead, MLPHead, last_layer_path  # noqa: I001 (registration order: the order error messages list them in)
from .cosine import CosineHead
from .periodic import PeriodicEmbedding, PeriodicMLPHead

__all__ = ["Head", "FAST_PATHS", "fast_path", "fast_path_for", "takes_top_k", "adapted_parameter_names",
           "decayed_parameter_names", "last_layer_names", "last_layer_path",
           "MLPHead", "LinearHead", "CosineHead", "PeriodicMLPHead", "PeriodicEmbedding"]
