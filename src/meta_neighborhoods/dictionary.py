"""The induced dictionary M = {(k_j, v_j)}: S learned neighbours that summarise the training set."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import MNConfig
from .validation import check_int


class InducedDictionary(nn.Module):
    """Keys in feature space and values in target space.

    Regression values are learned targets. Classification values are class distributions, either
    learned as ``softmax(VALUE_SCALE * raw)`` (the authors' parametrisation) or fixed one-hot
    labels drawn at random (as in the spiral toy). Fixed keys and values started at training rows and their
    targets (``init_from_samples``) stay a true neighbourhood: the training set itself. During training each
    example may see only a random subset of the slots (``slot_dropout``), which keeps any one neighbour from
    carrying the model.
    """

    VALUE_SCALE = 10.0  # learned class values are softmax(VALUE_SCALE * raw), as in the authors' code

    def __init__(self, config: MNConfig, key_dim: int, value_dim: int):
        super().__init__()
        size = check_int("dictionary size", config.dictionary_size)
        for name, number in (("key dimension", key_dim), ("value dimension", value_dim)):
            check_int(name, number)
        self.task, self.value_kind, self.slot_dropout = config.task, config.values, config.slot_dropout
        self.slot_draw = config.slot_draw
        self._hold("keys", torch.randn(size, key_dim) * config.key_std, learned=config.keys == "learned")
        if self.task == "classification" and self.value_kind == "fixed":
            values = self._encode(torch.randperm(size) % value_dim, value_dim)  # random labels
        else:
            values = torch.randn(size, value_dim) * (1.0 if self.task == "regression" else 0.1)
        self._hold("raw_values", values, learned=self.value_kind == "learned")

    def _hold(self, name: str, tensor: torch.Tensor, learned: bool) -> None:
        """A learned tensor is a parameter; a fixed one a buffer, saved with the model but never trained."""
        if learned:
            setattr(self, name, nn.Parameter(tensor))
        else:
            self.register_buffer(name, tensor)

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
            return (self.VALUE_SCALE * self.raw_values).softmax(dim=-1)
        return self.raw_values

    @torch.no_grad()
    def init_from_samples(self, samples: torch.Tensor, targets: torch.Tensor, generator=None,
                          features=None) -> torch.Tensor:
        """Start keys at randomly chosen training samples and values at their targets; ``features`` (e.g. the
        model's extractor) maps the chosen samples to key space, when they are not features already. Returns
        each sample's slot (-1: none), the ``own_slot`` that leave-one-out training hides from it."""
        if len(targets) != len(samples):
            raise ValueError(f"{len(targets)} targets for {len(samples)} samples: one target per sample")
        if len(samples) < self.size:
            raise ValueError(f"need at least {self.size} samples to initialise {self.size} keys, got {len(samples)}")
        pick = torch.randperm(len(samples), generator=generator)[: self.size]
        self.keys.copy_(samples[pick] if features is None else features(samples[pick]))
        self.raw_values.copy_(self._encode(targets[pick], self.raw_values.shape[1]))  # learned: softmax(scale * one-hot)
        own_slot = torch.full((len(samples),), -1, dtype=torch.long)
        own_slot[pick] = torch.arange(self.size)
        return own_slot

    @property
    def hidden_share(self) -> float:
        """The share of slots hidden from each example: ``slot_dropout`` while training, none at evaluation."""
        return self.slot_dropout if self.training else 0.0

    def visible(self, own_slot: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, float,
                                                                     torch.Tensor | None]:
        """(keys, values, hidden share, own_slot) as this batch sees them. With ``slot_draw="batch"`` one draw serves
        the whole training batch: every example sees the same ``keep`` slots, chosen uniformly (each example's view
        as the per-example draw of full attention), so the hidden slots are left out of the work. ``own_slot`` (B,)
        is renumbered to the kept slots (-1 where its slot is hidden)."""
        keys, values = self.keys, self.values()
        if self.hidden_share == 0.0 or self.slot_draw == "row":
            return keys, values, self.hidden_share, own_slot
        kept = torch.randperm(self.size, device=keys.device)[: self._keep()]
        if own_slot is not None:
            place = torch.full((self.size,), -1, dtype=torch.long, device=keys.device)
            place[kept] = torch.arange(len(kept), device=keys.device)
            own_slot = torch.where(own_slot >= 0, place[own_slot.clamp(min=0)], own_slot)
        return keys[kept], values[kept], 0.0, own_slot

    def _keep(self) -> int:
        """How many slots a training example sees."""
        return max(1, round(self.size * (1.0 - self.slot_dropout)))

    def slot_mask(self, batch_size: int, generator=None) -> torch.Tensor | None:
        """Which slots each example sees (B, S), or None when all are visible (evaluation), for full attention: the
        ``keep`` slots of highest random score, as the authors' code, found by one selection per row (kthvalue),
        2.5x cheaper than a top-k of half the slots. A tie at the threshold (chance about S / 2^24 per row) shows
        one slot more. Top-k attention draws for its nearest candidates only (``Attention.top_k``)."""
        if self.hidden_share == 0.0:
            return None
        keep = self._keep()
        scores = torch.rand(batch_size, self.size, generator=generator, device=self.keys.device)
        return scores >= scores.kthvalue(self.size - keep + 1, dim=1, keepdim=True).values

    def extra_repr(self) -> str:
        return (f"size={self.size}, task={self.task!r}, values={self.value_kind!r}, slot_dropout={self.slot_dropout}, "
                f"slot_draw={self.slot_draw!r}")
