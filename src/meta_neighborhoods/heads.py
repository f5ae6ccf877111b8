"""Heads f_phi: the part of the model that is finetuned for each input."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class MLPHead(nn.Module):
    """Linear layers with ReLU between them (none after the last). No hidden layers = a linear head."""

    def __init__(self, in_features: int, hidden: Sequence[int] = (), out_features: int = 1):
        super().__init__()
        widths = [in_features, *hidden, out_features]
        if any(not (isinstance(w, int) and w > 0) for w in widths):
            raise ValueError(f"layer widths must be positive integers, got {widths}")
        self.in_features, self.out_features = in_features, out_features
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x

    def adapted_parameter_names(self, adapt: str) -> list[str]:
        layers = range(len(self.layers)) if adapt == "all" else [len(self.layers) - 1]
        return [f"layers.{i}.{p}" for i in layers for p in ("weight", "bias")]


def LinearHead(in_features: int, out_features: int = 1) -> MLPHead:
    """A linear head ``A z + b`` (the spiral toy's logistic model)."""
    return MLPHead(in_features, (), out_features)


class CosineHead(nn.Module):
    """Cosine classifier ``tau * normalize(z) @ normalize_columns(W)`` (Sec. 2.3), no bias, tau learned.

    Only the direction of features and prototypes matters, so the keys need not learn magnitudes.
    W's columns are class prototypes; they are what the inner loop adapts.
    """

    decays_weight = False  # scale-invariant in W: weight decay would only shrink it (see parameter_groups)

    def __init__(self, in_features: int, out_features: int, scale: float = 10.0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.randn(in_features, out_features) * in_features**-0.5)
        self.scale = nn.Parameter(torch.tensor(float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(x, dim=-1) @ F.normalize(self.weight, dim=0)

    def adapted_parameter_names(self, adapt: str) -> list[str]:
        return ["weight"]


def adapted_parameter_names(head: nn.Module, adapt: str) -> list[str]:
    """The head's parameters the inner loop finetunes: all of them, or those of its last layer."""
    if hasattr(head, "adapted_parameter_names"):
        return head.adapted_parameter_names(adapt)
    names = [name for name, _ in head.named_parameters()]
    if adapt == "all":
        return names
    last_module = [m for m in head.modules() if any(True for _ in m.parameters(recurse=False))][-1]
    last = {id(p) for p in last_module.parameters(recurse=False)}
    return [name for name, p in head.named_parameters() if id(p) in last]
