"""The induced dictionary M = {(k_j, v_j)}: S learned neighbours that summarise the training set."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .similarity import check_option

TASKS = ("regression", "classification")
VALUE_KINDS = ("learned", "fixed")
KEY_INITS = ("samples", "gaussian")  # keys at training examples (``init_from_samples``), or the random start


class InducedDictionary(nn.Module):
    """Keys in feature space and values in target space.

    Regression values are learned targets. Classification values are class distributions, either
    learned as ``softmax(value_scale * raw)`` (the authors' parametrisation, scale 10) or fixed one-hot
    labels drawn at random (as in the spiral toy). During training each example may see only a random
    subset of the slots (``slot_dropout``), which keeps any one neighbour from carrying the model.
    """

    def __init__(
        self,
        size: int,
        key_dim: int,
        value_dim: int,
        task: str = "regression",
        values: str = "learned",
        key_std: float = 1.0,
        value_scale: float = 10.0,
        slot_dropout: float = 0.0,
    ):
        super().__init__()
        check_option("task", task, TASKS)
        check_option("values", values, VALUE_KINDS)
        for name, number in (("dictionary size", size), ("key dimension", key_dim), ("value dimension", value_dim)):
            if not (isinstance(number, int) and number > 0):
                raise ValueError(f"{name} must be a positive integer, got {number!r}")
        if not 0.0 <= slot_dropout < 1.0:
            raise ValueError(f"slot_dropout must be in [0, 1), got {slot_dropout}")
        self.task, self.value_kind = task, values
        self.value_scale, self.slot_dropout = value_scale, slot_dropout
        self.keys = nn.Parameter(torch.randn(size, key_dim) * key_std)
        if values == "fixed":
            labels = torch.randperm(size) % value_dim
            self.register_buffer("raw_values", self._encode(labels, value_dim))
        elif task == "regression":
            self.raw_values = nn.Parameter(torch.randn(size, value_dim))
        else:
            self.raw_values = nn.Parameter(torch.randn(size, value_dim) * 0.1)

    @property
    def size(self) -> int:
        return self.keys.shape[0]

    def _encode(self, targets: torch.Tensor, value_dim: int) -> torch.Tensor:
        """Targets as stored values: one-hot labels for classification, the targets themselves otherwise."""
        if self.task == "classification":
            return F.one_hot(targets.long(), value_dim).to(self.keys.dtype)
        return targets.reshape(len(targets), value_dim).to(self.keys.dtype)

    def values(self) -> torch.Tensor:
        """Values (S, value_dim) as the inner loop sees them."""
        if self.task == "classification" and self.value_kind == "learned":
            return (self.value_scale * self.raw_values).softmax(dim=-1)
        return self.raw_values

    @torch.no_grad()
    def init_from_samples(self, features: torch.Tensor, targets: torch.Tensor, generator=None) -> None:
        """Start keys at randomly chosen training features and values at their targets."""
        if len(features) < self.size:
            raise ValueError(f"need at least {self.size} samples to initialise {self.size} keys, got {len(features)}")
        pick = torch.randperm(len(features), generator=generator)[: self.size]
        self.keys.copy_(features[pick])
        self.raw_values.copy_(self._encode(targets[pick], self.raw_values.shape[1]))  # learned: softmax(scale * one-hot)

    def slot_mask(self, batch_size: int, generator=None) -> torch.Tensor | None:
        """Which slots each example sees (B, S), or None when all are visible (evaluation)."""
        if not self.training or self.slot_dropout == 0.0:
            return None
        keep = max(1, round(self.size * (1.0 - self.slot_dropout)))
        scores = torch.rand(batch_size, self.size, generator=generator, device=self.keys.device)
        chosen = scores.topk(keep, dim=1).indices
        return torch.zeros_like(scores, dtype=torch.bool).scatter_(1, chosen, True)

    def extra_repr(self) -> str:
        return f"size={self.size}, task={self.task!r}, values={self.value_kind!r}, slot_dropout={self.slot_dropout}"
