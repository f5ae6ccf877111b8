"""Periodic embeddings of the features under an MLP (Gorishniy et al. 2022, "PLR"): what helps any MLP on tables.

Each feature x_j becomes ReLU(W_j [cos(2 pi c_j x_j), sin(2 pi c_j x_j)] + b_j), beside x_j itself, with learned
frequencies c_j drawn from N(0, sigma^2) (RealMLP-TD's scale 0.1): a smooth feature's fine structure is then a
few linear pieces away, which a ReLU network on x alone builds slowly. The head declares its last layer
(``last_layer_path``), so ``adapt="last"`` takes the fast path of linear layers; ``adapt="all"`` the generic one.
Its frequencies and per-feature weights and biases, being 2-D, are decayed as weight matrices are by default (as in
the screens that measured it, ``docs/results/defaults.md``); Gorishniy et al.'s own code (rtdl, TabM) exempts the
embeddings from weight decay, as ``decay_embedding=False`` does (not measured here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ESTIMATOR, PERIODIC_EMBEDDING, PERIODIC_FREQUENCIES
from ..validation import check_positive
from .base import check_hidden, check_widths
from .mlp import last_layer_path


class PeriodicEmbedding(nn.Module):
    """(n, features) -> (n, features * (embedding + 1)): each feature beside its own periodic embedding."""

    def __init__(self, in_features: int, frequencies: int = PERIODIC_FREQUENCIES, sigma: float = 0.1,
                 embedding: int = PERIODIC_EMBEDDING):
        super().__init__()
        in_features, frequencies, embedding = check_widths("PeriodicEmbedding", in_features=in_features,
                                                           frequencies=frequencies, embedding=embedding)
        sigma = check_positive("PeriodicEmbedding's sigma", sigma)
        self.in_features, self.out_features = in_features, in_features * (embedding + 1)
        self.frequencies = nn.Parameter(torch.randn(in_features, frequencies) * sigma)
        self.weight = nn.Parameter(torch.randn(in_features, 2 * frequencies, embedding) / math.sqrt(2 * frequencies))
        self.bias = nn.Parameter(torch.zeros(in_features, embedding))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angles = 2 * math.pi * x.unsqueeze(-1) * self.frequencies  # (..., features, frequencies)
        periodic = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
        embedded = F.relu(torch.einsum("...fp,fpe->...fe", periodic, self.weight) + self.bias)
        return torch.cat([x, embedded.flatten(-2)], dim=-1)


@last_layer_path
class PeriodicMLPHead(nn.Module):
    """An MLP of ``hidden`` widths on ``PeriodicEmbedding`` of the features. Its arguments come in a head factory's
    order, so ``head=PeriodicMLPHead`` (or ``functools.partial(PeriodicMLPHead, hidden=(64,))``) is an estimator's
    head factory; the default widths are the estimators' ``hidden_layer_sizes``. ``decay_embedding=False`` exempts
    the embedding from weight decay (its ``decays_weight``, the head contract's)."""

    def __init__(self, in_features: int, out_features: int = 1, hidden: Sequence[int] = ESTIMATOR.hidden_layer_sizes,
                 frequencies: int = PERIODIC_FREQUENCIES, sigma: float = 0.1, embedding: int = PERIODIC_EMBEDDING,
                 decay_embedding: bool = True):
        super().__init__()
        hidden = check_hidden("PeriodicMLPHead", hidden)
        (out_features,) = check_widths("PeriodicMLPHead", out_features=out_features)
        self.embedding = PeriodicEmbedding(in_features, frequencies, sigma, embedding)
        self.embedding.decays_weight = bool(decay_embedding)
        widths = [self.embedding.out_features, *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.last_layer = nn.Linear(widths[-1], out_features)
        self.in_features, self.out_features = in_features, out_features

    def body(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embedding(x)
        for layer in self.hidden:
            x = F.relu(layer(x))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(self.body(x))
