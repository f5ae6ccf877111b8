"""Attention over the dictionary (Eq. 5): softmax of a similarity divided by a temperature T."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import SIMILARITIES
from .validation import check_option, check_positive


def similarity(z: torch.Tensor, keys: torch.Tensor, kind: str) -> torch.Tensor:
    """Similarities (B, S) between inputs z (B, d) and keys (S, d).

    ``"cosine"``: cosine similarity; ``"euclidean"``: negative squared Euclidean distance.
    """
    if kind == "cosine":
        return F.normalize(z, dim=-1) @ F.normalize(keys, dim=-1).T
    if kind == "euclidean":
        return 2 * z @ keys.T - z.pow(2).sum(-1, keepdim=True) - keys.pow(2).sum(-1)
    check_option("similarity", kind, SIMILARITIES)


class Attention(nn.Module):
    """omega(z, k_j): which neighbours an input listens to, and how much.

    The temperature is stored as log T so that a learned temperature stays positive.
    """

    def __init__(self, similarity: str = "euclidean", temperature: float = 1.0, learn_temperature: bool = False):
        super().__init__()
        check_option("similarity", similarity, SIMILARITIES)
        check_positive("temperature", temperature)
        self.similarity = similarity
        log_t = torch.tensor(math.log(temperature))
        if learn_temperature:
            self.log_temperature = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperature", log_t)

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp()

    def forward(self, z: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Weights (B, S) that sum to one over the slots an example may see (``mask``, True = visible)."""
        logits = similarity(z, keys, self.similarity) / self.temperature
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        return logits.softmax(dim=-1)

    def extra_repr(self) -> str:
        return f"similarity={self.similarity!r}, learned={isinstance(self.log_temperature, nn.Parameter)}"
