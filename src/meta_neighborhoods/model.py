"""MetaNeighborhoods: feature extractor + head + induced dictionary + per-input adaptation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .adaptation import Adaptation
from .config import MNConfig
from .dictionary import InducedDictionary
from .heads import Head, decayed_parameter_names
from .inner_loss import TopK
from .similarity import Attention


DENSE_BELOW = 32  # what an entry gathered costs against a multiply-add (measured: benchmarks/adaptation_speed.py)
SIMILARITY_TEMPORARIES = 4  # (rows x keys) tensors that ranking and weighing every key hold at once, at most


def dense_pays(n_keys: int, k: int, work: int = 1, gathered: int = 1) -> bool:
    """Whether top-k attention over ``n_keys`` keys runs dense, over every key (``predict_top_k``), where a row
    does ``work`` multiply-adds per key it attends to and the gathered path moves ``gathered`` entries per key: the
    dense path's n_keys x work against k x DENSE_BELOW x gathered. With one step shared by the batch a key costs a
    row about what it moves (a Gram product and a mix): dense up to DENSE_BELOW keys per k."""
    return n_keys * work <= k * DENSE_BELOW * gathered


class MetaNeighborhoods(nn.Module):
    """The model of Fig. 2. With ``dictionary_size=0`` it is the vanilla baseline: same extractor and
    head, trained the same way, no neighbours and no adaptation.

    ``head`` meets the head contract (``heads/base.py``): ``in_features`` is where the keys live,
    ``out_features`` the values' dimension. The method's settings come as one ``MNConfig``; keyword
    arguments override its fields (``MetaNeighborhoods(head, dictionary_size=512)``).
    """

    def __init__(self, head: nn.Module, config: MNConfig | None = None, *, extractor: nn.Module | None = None,
                 **overrides):
        super().__init__()
        if not (isinstance(head, nn.Module) and isinstance(head, Head)):
            raise TypeError(f"head must be a torch.nn.Module with in_features and out_features (the head contract, "
                            f"heads/base.py), got {type(head).__name__}")
        if not isinstance(config, (MNConfig, type(None))):
            raise TypeError(f"config must be an MNConfig or None (settings as keywords: MetaNeighborhoods(head, "
                            f"dictionary_size=512)), got {type(config).__name__}")
        self.config = config = (config or MNConfig()).replace(**overrides)
        self.task = config.task
        self.extractor = extractor if extractor is not None else nn.Identity()
        self.head = head
        self.dictionary = self.attention = self.adaptation = None
        if not config.vanilla:
            self.dictionary = InducedDictionary(config, head.in_features, head.out_features)
            self.attention = Attention(config.similarity, config.temperature, config.learn_temperature,
                                       head.in_features if config.learn_metric else None)
            self.adaptation = Adaptation(head, config)

    @property
    def vanilla(self) -> bool:
        return self.dictionary is None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.extractor(x)

    def predict_features(self, z: torch.Tensor, own_slot: torch.Tensor | None = None) -> torch.Tensor:
        """Predictions from features: the head adapted to each input's neighbourhood (or not, if vanilla).

        ``own_slot`` (B,): while training, a slot each row may not attend to (-1: none), the key that was
        initialised at the row itself and holds its own target: leave-one-out, so that training, like a test
        row, never sees its own answer among its neighbours. Top-k attention: ``predict_top_k``.
        """
        if z.dim() != 2 or z.shape[1] != self.head.in_features:  # each row has a neighbourhood: rows, not (*, d)
            source = "its extractor gave" if not isinstance(self.extractor, nn.Identity) else "got"
            raise ValueError(f"MetaNeighborhoods' head takes features of shape (batch, {self.head.in_features}), "
                             f"{source} {tuple(z.shape)}")
        if self.vanilla:
            return self.head(z)
        own_slot = own_slot if self.training else None
        if own_slot is not None and not (own_slot.shape == (len(z),) and _is_integer(own_slot) and bool(
                ((own_slot >= -1) & (own_slot < self.dictionary.size)).all())):
            values = f" with values in [{own_slot.min()}, {own_slot.max()}]" if own_slot.numel() else ""
            raise ValueError(f"own_slot must hold one integer slot in [-1, {self.dictionary.size}) per row: shape "
                             f"({len(z)},), got {own_slot.dtype} of shape {tuple(own_slot.shape)}{values}")
        k = self.config.neighbourhood_size(self.training)
        if k is not None:
            return self.predict_top_k(z, k, own_slot)
        keys, values, hidden, own_slot = self.dictionary.visible(own_slot)
        mask = self.dictionary.slot_mask(z.shape[0]) if hidden else None
        return self.adaptation(self.head, z, keys, values, self.attention(z, keys, mask, own_slot))

    def predict_top_k(self, z: torch.Tensor, k: int, own_slot: torch.Tensor | None = None) -> torch.Tensor:
        """``predict_features`` with attention on each input's k most similar visible keys. Where ``runs_dense``
        says so (up to DENSE_BELOW keys per k for one step shared by the batch), dense matrices over every key are
        faster than gathering (and their shapes do not depend on the data); otherwise the inner loop sees only the
        keys some example of the batch attends to, each example its own k. At evaluation, rows whose k keys
        together are fewer than the dictionary take only their own k each (``_predict_few``)."""
        keys, values, hidden, own_slot = self.dictionary.visible(own_slot)
        few = not self.training and not torch.compiler.is_exporting() and z.shape[0] * k < keys.shape[0]
        if self.runs_dense(keys.shape[0], k) and not few:
            weights = self.attention.top_k_dense(z, keys, k, hidden, own_slot)
            return self.adaptation(self.head, z, keys, values, weights)
        # training: only the chosen similarities carry gradient (backward O(B k d)); at evaluation the numbers of
        # the dense path, whatever the rows and keys, and no (B, k, d) gather of the keys' features
        attend = self.attention.top_k if self.training else self.attention.top_k_ranked
        top = attend(z, keys, k, hidden, own_slot)
        if few:
            return self._predict_few(z, keys, values, top)
        used, local = top.index.unique(return_inverse=True)
        return self.adaptation(self.head, z, keys.index_select(0, used), values.index_select(0, used),
                               TopK(local, top.weight))

    def _predict_few(self, z: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, top: TopK) -> torch.Tensor:
        """Each row's own k keys side by side, B x k of them, a key twice where two rows share it: the estimators'
        ``predict`` of one row at their defaults takes 1.0 to 1.8 ms, against 2.5 to 3.7 ms passing every key. The
        shapes follow the rows alone (no ``unique``), so ``vmap`` and ``torch.compile`` take it; an exported graph,
        whose batch is free, passes every key instead."""
        index = top.index.flatten()
        own = torch.arange(index.numel(), device=z.device).view(top.index.shape)
        return self.adaptation(self.head, z, keys.index_select(0, index), values.index_select(0, index),
                               TopK(own, top.weight))

    def row_entries(self) -> int:
        """Entries a row holds at evaluation, what bounds a block of rows predicted at once: its similarities to
        every key and their few (rows x keys) temporaries; the keys it attends to (all on the dense path, its k on
        the gathered one) at the adapted layer's inputs and output gradients, carried per row through every adapted
        layer for several inner steps, per row for a diagonal step, and shared by the rows for one other step on
        the dense path; and its own copy of each adapted tensor for a diagonal step or several steps."""
        if self.vanilla:
            return 0
        entries, widths = self._adapted()
        own_step, several = self._own_step(), self.config.inner_steps > 1
        own = entries if own_step else 0
        k, size = self.config.neighbourhood_size(training=False), self.dictionary.size
        dense = k is None or self.runs_dense(size, k)
        per_row_keys = (size if dense else k) * (sum(widths) if several else max(widths))
        return SIMILARITY_TEMPORARIES * size + (per_row_keys if own_step or not dense else 0) + own

    def runs_dense(self, n_keys: int, k: int) -> bool:
        """Whether top-k attention over ``n_keys`` keys runs dense (``dense_pays``). A row that takes its own step
        through the adapted tensors (``_own_step``) does their size in multiply-adds per key, against their widths
        gathered: at 4,096 keys and k = 128, adapting every layer with two inner steps, the dense training step took
        36x the gathered one's time, a diagonal step 19x (``benchmarks/own_step_paths.py``)."""
        if not self._own_step():
            return dense_pays(n_keys, k)
        entries, widths = self._adapted()
        return dense_pays(n_keys, k, entries, sum(widths))

    def _adapted(self) -> tuple[int, list[int]]:
        """The adapted tensors' entries in all, and each adapted weight matrix's inputs plus outputs (the head's input
        width where only vectors are adapted)."""
        params = dict(self.head.named_parameters())
        shapes = [params[name].shape for name in self.adaptation.step_size.names]
        widths = [shape[0] + shape[-1] for shape in shapes if len(shape) > 1] or [self.head.in_features]
        return sum(math.prod(shape) for shape in shapes), widths

    def _own_step(self) -> bool:
        """Whether each row takes its own step through the adapted tensors, carrying its keys with it (several inner
        steps, or a diagonal step size), rather than one step's terms shared by the batch."""
        return self.config.inner_steps > 1 or self.config.step_size == "diagonal"

    def extra_repr(self) -> str:
        return "vanilla" if self.vanilla else f"top_k={self.config.top_k}"

    def forward(self, x: torch.Tensor, own_slot: torch.Tensor | None = None) -> torch.Tensor:
        return self.predict_features(self.features(x), own_slot)

    def loss(self, prediction: torch.Tensor, target: torch.Tensor,
             weight: torch.Tensor | None = None) -> torch.Tensor:
        """The meta-objective (Eq. 2): mean squared error or cross-entropy of the adapted predictions; with a weight
        w_i per row, the weighted mean sum(w_i l_i) / sum(w_i) of the rows' losses (scikit-learn's sample_weight)."""
        reduction = "mean" if weight is None else "none"
        if self.task == "regression":
            loss = F.mse_loss(prediction, target.reshape(prediction.shape), reduction=reduction)
        else:
            loss = F.cross_entropy(prediction, target, reduction=reduction)
        if weight is None:
            return loss
        return (weight * loss.reshape(len(weight), -1).mean(dim=1)).sum() / weight.sum()

    def parameter_groups(self, weight_decay: float, learning_rate: float) -> list[dict]:
        """AdamW groups, each with its ``lr``: weight decay on the extractor's and head's weight matrices and kernels
        only.

        Never on the dictionary, the temperature or the step size (as the authors), nor where a module
        declares ``decays_weight = False`` (the cosine head, the iFiLM dictionaries; see the head contract), nor
        on BatchNorm's scales and shifts (the authors decay those and the iFiLM dictionaries: the README lists it).
        The keys form a group of their own at ``key_lr_scale`` times ``learning_rate`` when that is not 1.
        """
        decayed = set()
        for part in (self.extractor, self.head):
            params = dict(part.named_parameters())
            decayed.update(id(params[name]) for name in decayed_parameter_names(part))
        keys = self.dictionary.keys if self.dictionary is not None else None
        scaled = isinstance(keys, nn.Parameter) and keys.requires_grad and self.config.key_lr_scale != 1.0
        trainable = [p for p in self.parameters() if p.requires_grad and not (scaled and p is keys)]
        groups = [{"params": [p for p in trainable if id(p) in decayed], "weight_decay": weight_decay},
                  {"params": [p for p in trainable if id(p) not in decayed], "weight_decay": 0.0}]
        if scaled:
            groups.append({"params": [keys], "weight_decay": 0.0, "lr": learning_rate * self.config.key_lr_scale})
        return [{"lr": learning_rate, **group} for group in groups]


def _is_integer(t: torch.Tensor) -> bool:
    return not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)
