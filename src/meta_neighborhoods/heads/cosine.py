"""The cosine classifier (Sec. 2.3) and its fast inner loop."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..inner_loss import InnerLoop, loss_gradient
from .base import check_widths, fast_path


class CosineHead(nn.Module):
    """Cosine classifier ``tau * normalize(z) @ normalize_columns(W)``, no bias, tau learned.

    Only the direction of features and prototypes matters, so the keys need not learn magnitudes.
    W's columns are class prototypes; they are what the inner loop adapts.
    """

    decays_weight = False  # scale-invariant in W: weight decay would only shrink it

    def __init__(self, in_features: int, out_features: int, scale: float = 10.0):
        super().__init__()
        in_features, out_features = check_widths("CosineHead", in_features=in_features, out_features=out_features)
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.randn(in_features, out_features) * in_features**-0.5)
        self.scale = nn.Parameter(torch.tensor(float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(x, dim=-1) @ F.normalize(self.weight, dim=0)

    def adapted_parameter_names(self, adapt: str) -> list[str]:
        return ["weight"]


@fast_path(CosineHead)
def adapt_cosine(head: CosineHead, z, keys, values, weights, loop: InnerLoop) -> torch.Tensor:
    """Fast path for the cosine classifier: its inner gradient in closed form, per-example prototypes (B, d, C).

    For prototype column c with unit direction u_c, d logit_jc / d W_c = tau / |W_c| (I - u_c u_c^T) n(k_j),
    so the step needs only m_ic = sum_j w_ij r_jc n(k_j): O(B S d C), never a per-example backward pass.
    """
    alpha = loop.alphas["weight"]
    tau, unit_keys = head.scale, F.normalize(keys, dim=-1)
    weight = head.weight.expand(z.shape[0], *head.weight.shape)  # shape[0]: a symbolic batch size for export
    for _ in range(loop.steps):
        at = weight.detach() if loop.first_order else weight
        norms = at.norm(dim=1, keepdim=True)  # (B, 1, C)
        units = at / norms
        residual = loss_gradient(loop.task, tau * torch.einsum("sd,bdc->bsc", unit_keys, units), values)
        mixed = torch.einsum("bs,bsc,sd->bdc", weights, residual, unit_keys)
        along = (units * mixed).sum(dim=1, keepdim=True)
        weight = weight - alpha * tau * (mixed - units * along) / norms
    return tau * torch.einsum("bd,bdc->bc", F.normalize(z, dim=-1), F.normalize(weight, dim=1))
