"""iFiLM (Sec. 2.2, Eq. 4): BatchNorm followed by an instance-wise affine modulation.

Each wrapped BatchNorm gets a small dictionary of S entries (key k_j, scale gamma_j, shift
beta_j). An example attends over the keys with its globally pooled BN output and applies the
attention-weighted mixture: ``(1 + gamma_hat_i) * a_i + beta_hat_i``. The ``1 +`` lets
gamma/beta start at 0, so a fresh layer is exactly its BatchNorm.

Temperature. The authors give iFiLM "its own learned temperature, init 5". We read 5 as the
scale that multiplies the similarity, i.e. T = 1/5 = 0.2, not T = 5:
- cosine similarities lie in [-1, 1]; with T = 5 the logits lie in [-0.2, 0.2], so no weight
  is more than e^0.4 ~ 1.5x another: attention is nearly uniform, every example gets nearly the
  same gamma_hat/beta_hat (plain FiLM, not instance-wise), and the keys' gradients are damped by
  1/T. T = 0.2 gives logits in [-5, 5], i.e. real contrast between entries;
- T = 0.2 is also the authors' temperature for the main dictionary on images.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .similarity import Attention
from .validation import check_option

WHERE = ("all", "last")


class FiLMDictionary(nn.Module):
    """The per-layer dictionary {k_j, gamma_j, beta_j} and its attention.

    Weight decay never applies to it (``decays_weight``, see the head contract in ``heads/base.py``), as in
    the authors' code for every dictionary.
    """

    decays_weight = False

    def __init__(self, num_features: int, size: int = 10, similarity: str = "cosine",
                 temperature: float = 0.2, learn_temperature: bool = True, key_std: float = 1.0):
        super().__init__()
        # The queries are pooled BN outputs: centred, per-channel std at most 1 at init (weight 1,
        # bias 0), so N(0, key_std^2) keys with key_std = 1 lie in the same range. For cosine only
        # the direction counts, and an isotropic Gaussian spreads the directions uniformly.
        self.keys = nn.Parameter(torch.randn(size, num_features) * key_std)
        self.gamma = nn.Parameter(torch.zeros(size, num_features))
        self.beta = nn.Parameter(torch.zeros(size, num_features))
        self.attention = Attention(similarity, temperature, learn_temperature)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        """Modulate a (B, C, H, W), all examples at once: one (B, S) @ (S, C) product each."""
        weights = self.attention(a.mean(dim=(2, 3)), self.keys)  # (B, S)
        gamma_hat, beta_hat = (weights @ torch.cat([self.gamma, self.beta], dim=1))[:, :, None, None].chunk(2, dim=1)
        return torch.addcmul(beta_hat, 1 + gamma_hat, a)  # one pass over a: GPU steps here are launch-bound

    def extra_repr(self) -> str:
        return f"size={self.keys.shape[0]}, num_features={self.keys.shape[1]}"


class FiLMBatchNorm2d(nn.Module):
    """nn.BatchNorm2d (``.bn``) followed by iFiLM (``.film``); equals the BN while gamma = beta = 0."""

    def __init__(self, num_features: int, size: int = 10, similarity: str = "cosine",
                 temperature: float = 0.2, learn_temperature: bool = True, key_std: float = 1.0):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features)
        self.film = FiLMDictionary(num_features, size, similarity, temperature, learn_temperature, key_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.film(self.bn(x))


def film_norm_layer(where: str = "all", size: int = 10, similarity: str = "cosine",
                    temperature: float = 0.2, learn_temperature: bool = True
                    ) -> Callable[[int, bool], nn.Module]:
    """A `norm_layer(num_channels, last_in_stage)` for `create_backbone`.

    ``"all"`` wraps every BatchNorm; ``"last"`` only the last BN of each stage (cheaper), the
    others stay plain nn.BatchNorm2d.
    """
    check_option("where", where, WHERE)
    Attention(similarity, temperature)  # fail now, not at the first layer the backbone builds

    def norm_layer(num_channels: int, last_in_stage: bool = False) -> nn.Module:
        if where == "all" or last_in_stage:
            return FiLMBatchNorm2d(num_channels, size, similarity, temperature, learn_temperature)
        return nn.BatchNorm2d(num_channels)

    return norm_layer
