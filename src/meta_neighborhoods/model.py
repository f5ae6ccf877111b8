"""MetaNeighborhoods: feature extractor + head + induced dictionary + per-input adaptation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .adaptation import Adaptation
from .dictionary import TASKS, InducedDictionary
from .similarity import Attention, check_option


class MetaNeighborhoods(nn.Module):
    """The model of Fig. 2. With ``dictionary_size=0`` it is the vanilla baseline: same extractor and
    head, trained the same way, no neighbours and no adaptation.

    ``head`` must expose ``in_features`` (the feature dimension, where the keys live) and
    ``out_features`` (the target dimension, or the number of classes).
    """

    def __init__(
        self,
        head: nn.Module,
        task: str = "regression",
        dictionary_size: int = 100,
        similarity: str = "euclidean",
        temperature: float = 1.0,
        learn_temperature: bool = False,
        inner_steps: int = 1,
        step_size: str = "scalar",
        step_size_init: float = 0.05,
        adapt: str = "all",
        first_order: bool = False,
        values: str = "learned",
        key_std: float = 1.0,
        slot_dropout: float = 0.0,
        extractor: nn.Module | None = None,
        implementation: str = "auto",
    ):
        super().__init__()
        check_option("task", task, TASKS)
        if not (isinstance(dictionary_size, int) and dictionary_size >= 0):
            raise ValueError(f"dictionary_size must be a non-negative integer, got {dictionary_size!r}")
        self.task = task
        self.extractor = extractor if extractor is not None else nn.Identity()
        self.head = head
        self.dictionary = self.attention = self.adaptation = None
        if dictionary_size > 0:
            self.dictionary = InducedDictionary(
                dictionary_size, head.in_features, head.out_features, task, values, key_std, slot_dropout=slot_dropout
            )
            self.attention = Attention(similarity, temperature, learn_temperature)
            self.adaptation = Adaptation(
                head, task, inner_steps, step_size, step_size_init, adapt, first_order, implementation
            )

    @property
    def vanilla(self) -> bool:
        return self.dictionary is None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.extractor(x)

    def attend(self, z: torch.Tensor) -> torch.Tensor:
        """Attention weights (B, S) of features z over the dictionary (slot dropout while training)."""
        return self.attention(z, self.dictionary.keys, self.dictionary.slot_mask(z.shape[0]))

    def predict_features(self, z: torch.Tensor) -> torch.Tensor:
        """Predictions from features: the head adapted to each input's neighbourhood (or not, if vanilla)."""
        if self.vanilla:
            return self.head(z)
        return self.adaptation(self.head, z, self.dictionary.keys, self.dictionary.values(), self.attend(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict_features(self.features(x))

    def loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The meta-objective (Eq. 2): mean squared error or cross-entropy of the adapted predictions."""
        if self.task == "regression":
            return F.mse_loss(prediction, target.reshape(prediction.shape))
        return F.cross_entropy(prediction, target)
