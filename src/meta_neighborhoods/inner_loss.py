"""The inner objective (Eq. 1) that each input's head is finetuned on, and what one inner loop needs to know.

At the bottom of the method's modules: both the generic oracle (``adaptation.py``) and the heads' fast paths
(``heads/``) use these, so neither has to import the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

Params = dict[str, torch.Tensor]


def inner_loss(task: str, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-row loss L(f(k_j), v_j): squared error, or cross-entropy against a class distribution."""
    if task == "regression":
        return (prediction - target).pow(2).sum(-1)
    return -(target * F.log_softmax(prediction, dim=-1)).sum(-1)


def loss_gradient(task: str, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d inner_loss / d prediction, row by row, written out rather than asked of ``torch.autograd.grad``.

    The values are autograd's, and so are their derivatives for the second-order outer step; but being
    plain tensor algebra, the inner loop needs no autograd at evaluation and traces into an ONNX graph.
    """
    if task == "regression":
        return 2 * (prediction - target)
    return prediction.softmax(dim=-1) * target.sum(-1, keepdim=True) - target


def gather_rows(rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``rows[index]`` (..., K, n) for an index of any shape, through index_select, whose backward (index_add)
    is cheaper than that of advanced indexing."""
    return rows.index_select(0, index.flatten()).view(*index.shape, rows.shape[-1])


@dataclass(frozen=True)
class TopK:
    """Attention on K keys per example (top-k attention): ``weight`` (B, K) on the keys ``index`` (B, K) points
    to, zero on every other key. Fast paths that take it gather those keys; the others see ``dense``."""

    index: torch.Tensor
    weight: torch.Tensor

    def dense(self, n_keys: int) -> torch.Tensor:
        """The same weights as a (B, n_keys) matrix."""
        zeros = self.weight.new_zeros(self.weight.shape[0], n_keys)
        return zeros.scatter(1, self.index, self.weight)


@dataclass(frozen=True)
class InnerLoop:
    """One call's inner loop: the task's loss, how many steps, the step size of each adapted parameter (by name),
    and whether the Hessian terms are dropped (``first_order``)."""

    task: str
    steps: int
    alphas: Params
    first_order: bool = False

    @property
    def names(self) -> list[str]:
        """The adapted parameters of the head."""
        return list(self.alphas)
