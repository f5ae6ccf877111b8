"""Attention over the dictionary (Eq. 5): softmax of a similarity divided by a temperature T."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .inner_loss import TopK, gather_rows
from .validation import check_float32_positive, check_option


class Kind(NamedTuple):
    """One similarity in the three forms attention takes it; a new kind is one entry of ``KINDS`` (and its name in
    ``config.SIMILARITIES``, where settings are checked without torch; iFiLM's fused operator has its own formulas,
    ``film.FUSED``)."""

    full: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # z (B, d), keys (S, d) -> (B, S)
    pair: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # z (B, d), each row's own keys (B, K, d) -> (B, K)
    ranking: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (B, S) in full's order per row, cheaper
    size: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (B, 1): at least the sum of |terms| full adds


# the unit rounding of float32 matrix products at each of torch's precision settings (set_float32_matmul_precision's
# and the newer fp32_precision's, "none" where it defers): float32, TF32 (10 bits), bfloat16 (7 bits)
ROUNDING = {"highest": 2.0**-24, "ieee": 2.0**-24, "none": 2.0**-24, "high": 2.0**-11, "tf32": 2.0**-11,
            "medium": 2.0**-8, "bf16": 2.0**-8}


def _cosine(z: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    return F.normalize(z, dim=-1) @ F.normalize(keys, dim=-1).T


def _cosine_pairs(z: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Elementwise products summed, not a batch of (K, d) x (d, 1) matrix products, which CPU kernels run slowly."""
    return (F.normalize(keys, dim=-1) * F.normalize(z, dim=-1)[:, None]).sum(-1)


def _euclidean(z: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Negative squared Euclidean distances."""
    return 2 * z @ keys.T - z.pow(2).sum(-1, keepdim=True) - keys.pow(2).sum(-1)


def _euclidean_pairs(z: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    return -(keys - z[:, None]).pow(2).sum(-1)


def _euclidean_ranking(z: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """The input's own norm, the same for every key, left out: one fused product."""
    return torch.addmm(-keys.pow(2).sum(-1), z, keys.T, alpha=2)


def _cosine_size(z: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Products of unit vectors add up to 1 at most, and their normalisation's rounding counts as much again."""
    return torch.full((z.shape[0], 1), 2.0, dtype=z.dtype, device=z.device)


def _euclidean_size(z: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """|2 z.k| + |z|^2 + |k|^2 is at most (|z| + |k|)^2, taken at the largest key."""
    return (z.norm(dim=-1, keepdim=True) + keys.norm(dim=-1).max()).pow(2)


KINDS = {"cosine": Kind(_cosine, _cosine_pairs, _cosine, _cosine_size),
         "euclidean": Kind(_euclidean, _euclidean_pairs, _euclidean_ranking, _euclidean_size)}


def kind_of(name: str) -> Kind:
    """The similarity ``name`` (a ConfigError for any other): a lookup, as every training step makes it."""
    found = KINDS.get(name) if isinstance(name, str) else None
    if found is None:
        check_option("similarity", name, tuple(KINDS))
    return found


def similarity(z: torch.Tensor, keys: torch.Tensor, name: str) -> torch.Tensor:
    """Similarities (B, S) between inputs z (B, d) and keys (S, d): ``"cosine"``, or ``"euclidean"``, the negative
    squared Euclidean distance."""
    return kind_of(name).full(z, keys)


@torch.no_grad()
def nearest(z: torch.Tensor, keys: torch.Tensor, kind: str, k: int, chunk_elements: int = 1 << 22,
            ordered: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Ranking scores and indices (B, k) of each input's k most similar keys: most similar first, or with
    ``ordered=False`` in no particular order (sorting them costs more than finding them).

    The keys are scanned in chunks of at most ``chunk_elements`` scores, keeping the best k so far: memory stays
    bounded however large the dictionary, so it may hold every training row. No gradient: only the choice is
    made here.
    """
    chunk, ranking = max(k, chunk_elements // max(z.shape[0], 1)), kind_of(kind).ranking
    best = index = None
    for start in range(0, keys.shape[0], chunk):
        scores = ranking(z, keys[start : start + chunk])
        candidates = torch.arange(start, start + scores.shape[1], device=z.device).expand_as(scores)
        if best is not None:
            scores, candidates = torch.cat([best, scores], dim=1), torch.cat([index, candidates], dim=1)
        best, chosen = scores.topk(min(k, scores.shape[1]), dim=1, sorted=ordered)
        index = candidates.gather(1, chosen)
    return best, index


@torch.no_grad()
def settled(scores: torch.Tensor, z: torch.Tensor, keys: torch.Tensor, kind: str, k: int,
            temperature: torch.Tensor) -> torch.Tensor:
    """Each row's k most similar keys (B, k) by a rule that no other row of the batch can change: their
    similarities over the temperature, computed in float64 pair by pair and rounded to float32, the lower index
    first where these tie. Keys that lie at equal distances (discrete features) would otherwise be chosen by how
    the batch's float32 ``scores`` (B, S) rounded, which follows the batch's shape.

    The float32 choice obeys the rule wherever the (k+1)-th score falls short of the k-th by more than rounding can
    ``reach``; the other rows are ranked again (``_ranked_again``). A compiled or exported graph (``torch.compile``,
    ``torch.export``, ONNX) and ``vmap`` take the float32 choice: their shapes may not follow the data."""
    if k >= keys.shape[0] or torch.compiler.is_compiling() or _under_vmap(scores):
        return scores.topk(k, dim=1, sorted=False).indices
    best, index = scores.topk(k + 1, dim=1, sorted=False)
    next_, at = best.min(dim=1, keepdim=True)  # the (k+1)-th score, and where it is
    kth = best.scatter_(1, at, torch.inf).amin(dim=1, keepdim=True)
    margin = reach(kth, z, keys, kind, temperature)
    rows = (next_ >= kth - margin).nonzero()[:, 0]
    top = index[rows]  # their k + 1 keys
    index = index.scatter_(1, at, index[:, k:].clone())[:, :k]  # the last key in the (k+1)-th's place
    if len(rows):
        index[rows] = _ranked_again(scores[rows], top, z[rows], keys, kind, temperature, kth[rows], margin[rows])
    return index


def _under_vmap(t: torch.Tensor) -> bool:
    """Whether ``vmap`` batches ``t`` at any level of torch.func's wrappers (``vmap(grad(...))`` wraps it twice)."""
    functorch = torch._C._functorch
    while functorch.is_functorch_wrapped_tensor(t):
        if functorch.is_batchedtensor(t):
            return True
        t = functorch.get_unwrapped(t)
    return False


def _ranked_again(scores: torch.Tensor, top: torch.Tensor, z: torch.Tensor, keys: torch.Tensor, kind: str,
                  temperature: torch.Tensor, kth: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
    """``settled``'s choice (R, k) for rows whose keys within ``margin`` of the k-th score may be out of place: those
    keys (among the k + 1 best ``top``, or as near beyond them) ranked by exact similarities (float64, rounded);
    the others stay above or below them, as infinities."""
    candidates, near_scores = _with_near_ones(scores, top, kth - margin)
    ranks = torch.where(near_scores > kth, torch.inf, -torch.inf).float()
    row, column = ((near_scores - kth).abs() <= margin).nonzero().unbind(1)
    exact = KINDS[kind].pair(z[row].double(), keys[candidates[row, column]].double()[:, None])[:, 0]
    ranks[row, column] = (exact / temperature.double()).float()
    dropped = _lower_first(ranks, candidates).topk(candidates.shape[1] - top.shape[1] + 1, dim=1, largest=False)
    kept = torch.ones_like(candidates, dtype=torch.bool).scatter_(1, dropped.indices, False)
    return candidates[kept].view(len(top), -1)  # a few dropped: 20x cheaper than a top-k of nearly all


def _with_near_ones(scores: torch.Tensor, top: torch.Tensor, floor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's keys ``top`` (R, n) and any others scoring at least ``floor`` (R, 1), side by side (padded with
    key 0 at -inf), and their scores: one pass over the row's scores, where another top-k would take several."""
    beyond = (scores >= floor).scatter_(1, top, False).nonzero()
    counts = torch.bincount(beyond[:, 0], minlength=len(top))
    width = int(counts.max()) if len(beyond) else 0
    extra = torch.zeros(len(top), width, dtype=top.dtype, device=top.device)
    extra_scores = torch.full((len(top), width), -torch.inf, dtype=scores.dtype, device=scores.device)
    place = torch.arange(len(beyond), device=top.device) - (counts.cumsum(0) - counts)[beyond[:, 0]]
    extra[beyond[:, 0], place] = beyond[:, 1]
    extra_scores[beyond[:, 0], place] = scores[beyond[:, 0], beyond[:, 1]]
    return torch.cat([top, extra], dim=1), torch.cat([scores.gather(1, top), extra_scores], dim=1)


def reach(kth: torch.Tensor, z: torch.Tensor, keys: torch.Tensor, kind: str, temperature: torch.Tensor) -> torch.Tensor:
    """How far (B, 1) rounding can have moved a score from the k-th ``kth`` (B, 1) relative to where its exact
    value ranks: twice the similarity's worst rounding (d products summed in any order, two sums more, a division:
    ``ROUNDING`` times d + 4 terms of at most ``Kind.size``) and two float32 steps (where the exact scores round)."""
    unit = _matmul_rounding(kth.device) if kth.dtype == torch.float32 else torch.finfo(kth.dtype).eps / 2
    drift = (keys.shape[1] + 4) * unit * KINDS[kind].size(z, keys).double() / temperature.double()
    tiny = 4 * torch.finfo(torch.float32).tiny  # where the scores are subnormal, their rounding is absolute
    return (2 * drift + 2**-22 * (kth.abs() + drift) + tiny).to(kth.dtype)


def _matmul_rounding(device: torch.device) -> float:
    """The unit rounding of float32 matrix products on ``device`` at torch's precision setting; where the newer
    per-backend settings are in use (the older query then raises), the backend's own."""
    try:
        return ROUNDING[torch.get_float32_matmul_precision()]
    except RuntimeError:
        backend = torch.backends.cuda.matmul if device.type == "cuda" else torch.backends.mkldnn.matmul
        setting = backend.fp32_precision
        return ROUNDING.get(torch.backends.fp32_precision if setting == "none" else setting, ROUNDING["bf16"])


def _lower_first(scores: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Integers that order as float32 ``scores`` (R, n) do, then the lower of their keys' ``index`` first: one
    top-k of them applies the rule, 4x faster than a stable sort."""
    bits = scores.view(torch.int32).long()
    order = torch.where(bits < 0, -(bits & 0x7FFFFFFF), bits)  # the floats' order (-0 as +0)
    return order * 2**31 + (2**31 - 1 - index)


def n_candidates(k: int, slot_dropout: float, n_keys: int) -> int:
    """How many nearest keys to draw slot dropout for, so that fewer than k of them are visible with a chance
    below about 1e-8: their visible count is binomial, with mean n (1 - slot_dropout)."""
    return min(n_keys, math.ceil((k + 6 * math.sqrt(k) + 6) / (1.0 - slot_dropout)))


def first_visible(index: torch.Tensor, hidden: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k first visible of each row's keys ``index`` (B, n), nearest first (hidden ones last, if too few are
    visible), and whether each of those is hidden."""
    n = index.shape[1]
    rank = (~hidden) * n + torch.arange(n, 0, -1, device=index.device)  # visible first, then in index's order
    chosen = rank.topk(k, dim=1).indices
    return index.gather(1, chosen), hidden.gather(1, chosen)


def nearest_visible(scores: torch.Tensor, index: torch.Tensor, hidden: torch.Tensor,
                    k: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The k most similar visible keys among each row's candidates ``index`` (B, n) in any order, ranked by their
    ``scores``, and which of them are hidden (None: none is). Only where a row has fewer than k visible candidates
    (chance about 1e-8 with ``n_candidates`` of them) are they sorted, and its nearest hidden ones fill the rest."""
    if bool(((~hidden).sum(1) >= k).all()):
        chosen = scores.masked_fill(hidden, float("-inf")).topk(k, dim=1, sorted=False).indices
        return index.gather(1, chosen), None
    order = scores.argsort(dim=1, descending=True)
    return first_visible(index.gather(1, order), hidden.gather(1, order), k)


def masked_softmax(logits: torch.Tensor, visible: torch.Tensor | None,
                   fallback: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax over the last dimension restricted to ``visible`` (True = kept; None: all); uniform over
    ``fallback`` (None: every slot) where a row keeps nothing, so that a fallback never reaches a row's own slot."""
    if visible is None:
        return logits.softmax(dim=-1)
    weights = logits.masked_fill(~visible, torch.finfo(logits.dtype).min).softmax(dim=-1)
    if fallback is None:
        return weights
    uniform = fallback.to(weights.dtype) / fallback.sum(dim=-1, keepdim=True).clamp_min(1)
    return torch.where(visible.any(dim=-1, keepdim=True), weights, uniform)


class Attention(nn.Module):
    """omega(z, k_j): which neighbours an input listens to, and how much.

    The temperature is stored as log T so that a learned temperature stays positive. With ``metric_dim`` = d the
    similarity is taken between z * s and k * s, s = exp(log_scale) a learned weight per feature starting at 1
    (an ARD metric): neighbours can come to be judged by the features that matter.
    """

    def __init__(self, similarity: str = "euclidean", temperature: float = 1.0, learn_temperature: bool = False,
                 metric_dim: int | None = None):
        super().__init__()
        kind_of(similarity)  # checked
        check_float32_positive("temperature", temperature)
        self.similarity = similarity
        log_t = torch.tensor(math.log(temperature))
        if learn_temperature:
            self.log_temperature = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperature", log_t)
        self.log_scale = None if metric_dim is None else nn.Parameter(torch.zeros(metric_dim))

    def scaled(self, t: torch.Tensor) -> torch.Tensor:
        """Inputs or keys (..., d) in the space the similarity is taken in: weighted per feature, if learned."""
        return t if self.log_scale is None else t * self.log_scale.exp()

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp()

    def forward(self, z: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None = None,
                own_slot: torch.Tensor | None = None) -> torch.Tensor:
        """Weights (B, S) that sum to one over the slots an example may see (``mask``, True = visible), never
        on its ``own_slot`` (B,) (-1: none); uniform over all slots but its own for a row that may see none."""
        others = None
        if own_slot is not None:
            others = torch.arange(keys.shape[0], device=z.device) != own_slot[:, None]
            mask = others if mask is None else mask & others
        return masked_softmax(self.logits(z, keys), mask, others)

    def logits(self, z: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Similarities (B, S) over the temperature: the softmax's input, and a ranking of the keys too."""
        return self._logits_scaled(self.scaled(z), self.scaled(keys))

    def _logits_scaled(self, z: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return similarity(z, keys, self.similarity) / self.temperature

    @torch.no_grad()
    def choose(self, z: torch.Tensor, keys: torch.Tensor, k: int, slot_dropout: float = 0.0,
               own_slot: torch.Tensor | None = None,
               scores: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each example's k most similar visible keys (B, k), and which of them are hidden (None: none is).

        Slot dropout hides each slot from each example with probability ``slot_dropout``, drawn only for the
        example's nearest ``n_candidates`` keys, not for all S slots; ``own_slot`` (B,) is a slot each example
        never sees (-1: none). A key is hidden only where fewer than k candidates are visible (chance below 1e-8).
        ``scores`` (B, S), if given, rank the keys as the similarities do, so that they are not computed again;
        ``z`` and ``keys`` are taken as ``scaled`` already. At evaluation the choice from ``scores`` is ``settled``:
        a row gets the keys it gets alone, whatever other rows the batch holds.
        """
        k = max(1, min(k, keys.shape[0] - int(own_slot is not None)))  # a row's own key is never among its k
        n = n_candidates(k, slot_dropout, keys.shape[0]) if slot_dropout > 0 else k
        n = min(keys.shape[0], n + int(own_slot is not None))
        if scores is None:
            scores, index = nearest(z, keys, self.similarity, n, ordered=False)
        elif not (self.training or slot_dropout > 0 or own_slot is not None):  # training's choice is drawn anew
            return settled(scores, z, keys, self.similarity, k, self.temperature), None
        else:
            scores, index = scores.topk(n, dim=1, sorted=False)
        hidden = None
        if slot_dropout > 0:
            hidden = torch.rand(index.shape, device=z.device) < slot_dropout
        if own_slot is not None:
            own = index == own_slot[:, None]
            hidden = own if hidden is None else hidden | own
            scores = scores.masked_fill(own, float("-inf"))  # ranked last: never a filler for too few visible
        if hidden is None:
            return index, None
        return nearest_visible(scores, index, hidden, k)

    def top_k(self, z: torch.Tensor, keys: torch.Tensor, k: int, slot_dropout: float = 0.0,
              own_slot: torch.Tensor | None = None) -> TopK:
        """Weights on the keys ``choose`` picks, a softmax over those k alone (``TopK``; uniform over them if all
        are hidden). Only the (B, k) chosen similarities are computed with gradient: the backward costs O(B k d).
        Training's form: its choice, from chunks of the keys, is not ``settled`` (``top_k_ranked``'s is).
        """
        z, keys = self.scaled(z), self.scaled(keys)
        index, hidden = self.choose(z, keys, k, slot_dropout, own_slot)
        logits = kind_of(self.similarity).pair(z, gather_rows(keys, index)) / self.temperature
        return TopK(index, masked_softmax(logits, None if hidden is None else ~hidden))

    def top_k_ranked(self, z: torch.Tensor, keys: torch.Tensor, k: int, slot_dropout: float = 0.0,
                     own_slot: torch.Tensor | None = None) -> TopK:
        """``top_k`` from the similarities to every key at once, the numbers ``top_k_dense`` takes: a few rows then
        get what a batch gets, where rounding makes the two kinds differ (a row far from every key)."""
        logits, index, hidden = self._ranked(z, keys, k, slot_dropout, own_slot)
        return TopK(index, masked_softmax(logits.gather(1, index), None if hidden is None else ~hidden))

    def top_k_dense(self, z: torch.Tensor, keys: torch.Tensor, k: int, slot_dropout: float = 0.0,
                    own_slot: torch.Tensor | None = None) -> torch.Tensor:
        """``top_k``'s weights as a (B, S) matrix, computed as full attention masked to the chosen keys: on a
        small dictionary one (B, S) matrix product costs less than gathering (B, k, d) keys, and it ranks the keys
        too. A row whose k keys are all hidden gets uniform weights over them, as in ``top_k``."""
        logits, index, hidden = self._ranked(z, keys, k, slot_dropout, own_slot)
        chosen = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, index, True)
        if hidden is None:
            return masked_softmax(logits, chosen)
        return masked_softmax(logits, torch.zeros_like(chosen).scatter_(1, index, ~hidden), chosen)

    def _ranked(self, z: torch.Tensor, keys: torch.Tensor, k: int, slot_dropout: float,
                own_slot: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The logits (B, S) and what ``choose`` makes of them."""
        z, keys = self.scaled(z), self.scaled(keys)
        logits = self._logits_scaled(z, keys)
        return (logits, *self.choose(z, keys, k, slot_dropout, own_slot, logits.detach()))

    def extra_repr(self) -> str:
        temperature = "?" if self.log_temperature.is_meta else f"{self.log_temperature.exp().item():.4g}"
        return (f"similarity={self.similarity!r}, temperature={temperature}, "
                f"learned={isinstance(self.log_temperature, nn.Parameter)}, "
                f"metric={'learned' if self.log_scale is not None else 'fixed'}")
