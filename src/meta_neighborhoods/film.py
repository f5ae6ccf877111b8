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
from torch.autograd.function import once_differentiable

from .similarity import Attention
from .validation import check_option

WHERE = ("all", "last")
_NORM_EPS = 1e-12  # F.normalize's floor on a norm


class FiLMDictionary(nn.Module):
    """The per-layer dictionary {k_j, gamma_j, beta_j}; ``attention`` holds its similarity and temperature.

    Weight decay never applies to it (``decays_weight``, see the head contract in ``heads/base.py``), as to the
    method's own dictionary; the authors' code decays the iFiLM dictionaries, which sit in its extractor (a
    deviation the README lists). ``FiLMBatchNorm2d`` computes the modulation (``_FusedFiLM``).
    """

    decays_weight = False

    def __init__(self, num_features: int, size: int = 10, similarity: str = "cosine",
                 temperature: float = 0.2, learn_temperature: bool = True):
        super().__init__()
        check_option("similarity", similarity, tuple(FUSED))  # iFiLM's fused operator has its own formulas
        # The queries are pooled BN outputs: centred, per-channel std at most 1 at init (weight 1,
        # bias 0), so N(0, 1) keys lie in the same range. For cosine only the direction counts, and an
        # isotropic Gaussian spreads the directions uniformly.
        self.keys = nn.Parameter(torch.randn(size, num_features))
        self.gamma = nn.Parameter(torch.zeros(size, num_features))
        self.beta = nn.Parameter(torch.zeros(size, num_features))
        self.attention = Attention(similarity, temperature, learn_temperature)

    def extra_repr(self) -> str:
        return f"size={self.keys.shape[0]}, num_features={self.keys.shape[1]}"


class FiLMBatchNorm2d(nn.Module):
    """nn.BatchNorm2d (``.bn``) followed by iFiLM (``.film``); equals the BN while gamma = beta = 0.

    The two run as one fused operator (``_FusedFiLM``): the BN's parameters and buffers are read and
    updated as nn.BatchNorm2d.forward would, but ``.bn`` itself is never called; under autocast or a
    ``torch.func`` transform, and for an empty batch, they run ``unfused``. The fused operator's backward is
    once differentiable: a gradient of gradients (a gradient penalty) needs ``unfused``.
    """

    def __init__(self, num_features: int, **options):
        """``options``: the dictionary's (``FiLMDictionary``: size, similarity, temperature, learn_temperature)."""
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features)
        self.film = FiLMDictionary(num_features, **options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn, film = self.bn, self.film
        bn._check_input_dim(x)  # nn.BatchNorm2d's error for an input that is not (N, C, H, W)
        if x.numel() == 0 or torch.is_autocast_enabled(x.device.type) or torch._C._are_functorch_transforms_active():
            return self.unfused(x)  # where the fused operator cannot go: its formulas hold one dtype and no batching
        return _FusedFiLM.apply(x, bn.weight, bn.bias, film.keys, film.gamma, film.beta,
                                film.attention.log_temperature, film.attention.similarity, *_batch_norm_mode(bn),
                                bn.eps)

    def unfused(self, x: torch.Tensor) -> torch.Tensor:
        """The same layer as autograd's generic operators (slower): the BatchNorm, ``Attention`` over its pooled
        outputs, the mixture and the modulation; what autocast, ``torch.func`` and an empty batch get."""
        a, film = self.bn(x), self.film
        weights = film.attention(a.mean(dim=(2, 3)), film.keys)
        return torch.addcmul((weights @ film.beta)[:, :, None, None], 1 + (weights @ film.gamma)[:, :, None, None], a)


# ---------------------------------------------------------------------------------------------------
# The fused operator. A GPU step of a small batch is launch-bound, and nn.BatchNorm2d followed by autograd's
# generic Attention, mixing and addcmul dispatched about 210 aten operators per layer, forward and backward
# (see benchmarks/ifilm_ops.py). Folded, BN then iFiLM is one per-example, per-channel scale and shift of
# the centred input. With N examples of n positions, s_i the sums of x_i over its map, s = sum_i s_i and
# mean = s / (N n):
#   c = w / sqrt(var + eps),  q_i = (s_i - s / N) c + n b  (n times x_i's pooled BN output: the query),
#   W = softmax(similarity(q / n, keys) / T),  gamma_hat = W gamma,  beta_hat = W beta,
#   y_i = (x_i - mean) (1 + gamma_hat_i) c + (1 + gamma_hat_i) b + beta_hat_i.
# Forward and backward are written out: one autograd node, about 90 operators on (N, C)-sized tensors
# (160 aten events), and the passes over x are sums, centring and modulation (on the CPU, cheaper than
# torch's BatchNorm alone). Constants ride on alpha/value arguments where they can: an operator with a
# Python number operand dispatches four more to wrap it.


def _batch_norm_mode(bn: nn.BatchNorm2d) -> tuple:
    """(running_mean, running_var, use batch statistics, momentum): nn.BatchNorm2d.forward's choices,
    counting the batch in ``num_batches_tracked`` as it does."""
    momentum = bn.momentum or 0.0
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        momentum = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    tracked = not bn.training or bn.track_running_stats
    use_batch = bn.training or (bn.running_mean is None and bn.running_var is None)
    return (bn.running_mean if tracked else None), (bn.running_var if tracked else None), use_batch, momentum


def _maps(t: torch.Tensor) -> torch.Tensor:
    """A per-channel (C) or per-example, per-channel (N, C) tensor broadcast over the feature maps."""
    return t.view(*t.shape, 1, 1)


def _normalise(x: torch.Tensor, running_mean, running_var, use_batch: bool, momentum: float, eps: float) -> tuple:
    """(x - mean, the offsets s_i - n mean (N, C), 1 / sqrt(var + eps)) by BatchNorm's rule; batch statistics
    update the running averages (unbiased variance) as BatchNorm does. The variance takes two passes (the
    mean, then squares of x - mean), exact where a sum of squares would cancel."""
    n = x.shape[2] * x.shape[3]
    sums = x.sum(dim=(2, 3))
    if not use_batch:
        return x - _maps(running_mean), torch.sub(sums, running_mean, alpha=n), (running_var + eps).rsqrt()
    count = x.shape[0] * n
    if count == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {x.shape}")
    total = sums.sum(dim=0)
    centred = torch.sub(x, _maps(total), alpha=1 / count)
    squares = (centred * centred).sum(dim=(0, 2, 3))
    if running_mean is not None:
        # (1 - momentum) r + momentum statistic, as r - momentum r + ...: scalar factors ride on alpha
        running_mean.add_(running_mean, alpha=-momentum).add_(total, alpha=momentum / count)
        running_var.add_(running_var, alpha=-momentum).add_(squares, alpha=momentum / (count - 1))
    return centred, torch.sub(sums, total, alpha=1 / x.shape[0]), (squares / count + eps).rsqrt()


def _unit(v: torch.Tensor, eps: float) -> tuple:
    """(rows of v scaled to length one as F.normalize(v, eps=eps) does, the clamped norms, whether the norm
    was kept)."""
    norm = torch.linalg.vector_norm(v, dim=1, keepdim=True)
    clamped = norm.clamp_min(eps)
    return v / clamped, clamped, norm.eq(clamped)


def _unit_backward(grad: torch.Tensor, unit: torch.Tensor, clamped: torch.Tensor, kept: torch.Tensor):
    """Gradient through ``_unit``: the radial part drops out, unless the norm was clamped (then a plain scale)."""
    radial = (unit * grad).sum(1, keepdim=True) * kept
    return torch.addcmul(grad, unit, radial, value=-1).div_(clamped)


def _cosine(queries: torch.Tensor, keys: torch.Tensor, n: int) -> tuple:
    """(similarities (N, S) of ``queries / n`` to the keys, what the backward needs); the 1/n counts only through
    F.normalize's floor on the norm."""
    (q, q_norm, q_kept), (k, k_norm, k_kept) = _unit(queries, n * _NORM_EPS), _unit(keys, _NORM_EPS)
    return torch.mm(q, k.t()), (q, q_norm, q_kept, k, k_norm, k_kept)


def _cosine_backward(grad: torch.Tensor, saved: tuple, n: int) -> tuple:
    """Gradients (queries, keys) of the similarities."""
    q, q_norm, q_kept, k, k_norm, k_kept = saved
    return (_unit_backward(torch.mm(grad, k), q, q_norm, q_kept),
            _unit_backward(torch.mm(grad.t(), q), k, k_norm, k_kept))


def _euclidean(queries: torch.Tensor, keys: torch.Tensor, n: int) -> tuple:
    sims = torch.addmm((keys * keys).sum(1), queries, keys.t(), beta=-1, alpha=2 / n)
    return sims.sub_((queries * queries).sum(1, keepdim=True), alpha=1 / n**2), (queries, keys)


def _euclidean_backward(grad: torch.Tensor, saved: tuple, n: int) -> tuple:
    queries, keys = saved
    grad_queries = torch.addmm(queries * grad.sum(1, keepdim=True), grad, keys, beta=-2 / n**2, alpha=2 / n)
    return grad_queries, torch.addmm(keys * grad.sum(0)[:, None], grad.t(), queries, beta=-2, alpha=2 / n)


# Each similarity (``similarity.KINDS``) of pooled sums ``queries`` = n x the pooled means, as the fused operator
# takes it: (forward, backward). A kind without its formulas here is refused by FiLMDictionary.
FUSED = {"cosine": (_cosine, _cosine_backward), "euclidean": (_euclidean, _euclidean_backward)}


class _FusedFiLM(torch.autograd.Function):
    """BatchNorm2d + iFiLM in one operator with a hand-written backward (see the comment above)."""

    @staticmethod
    def forward(ctx, x, weight, bias, keys, gamma, beta, log_temperature, kind, running_mean, running_var,
                use_batch, momentum, eps):
        n = x.shape[2] * x.shape[3]
        centred, offsets, inv_std = _normalise(x, running_mean, running_var, use_batch, momentum, eps)
        c = inv_std * weight
        sims, saved = FUSED[kind][0](torch.add(offsets * c, bias, alpha=n), keys, n)
        temperature = log_temperature.exp()
        logits = sims / temperature
        attention = logits.softmax(dim=1)
        gamma_hat = torch.mm(attention, gamma)
        scale = _maps(torch.addcmul(c, gamma_hat, c))  # (1 + gamma_hat) c
        shift = torch.addcmul(torch.addmm(bias, attention, beta), gamma_hat, bias)  # (1 + gamma_hat) b + beta_hat
        ctx.kind, ctx.use_batch = kind, use_batch
        ctx.save_for_backward(centred, bias, gamma, beta, offsets, inv_std, c, gamma_hat, scale, attention, logits,
                              temperature, *saved)
        return torch.addcmul(_maps(shift), centred, scale)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        centred, bias, gamma, beta, offsets, inv_std, c, gamma_hat, scale, attention, logits, temperature, *saved = \
            ctx.saved_tensors
        n = centred.shape[2] * centred.shape[3]
        grad_scale, grad_shift = (grad_y * centred).sum(dim=(2, 3)), grad_y.sum(dim=(2, 3))
        grad_gamma_hat = torch.addcmul(grad_scale * c, grad_shift, bias)  # beta_hat's gradient is grad_shift
        grad_attention = torch.addmm(torch.mm(grad_gamma_hat, gamma.t()), grad_shift, beta.t())
        grad_logits = torch._softmax_backward_data(grad_attention, attention, 1, attention.dtype)
        grad_queries, grad_keys = FUSED[ctx.kind][1](grad_logits / temperature, saved, n)
        grad_c = torch.addcmul(torch.addcmul(grad_scale, gamma_hat, grad_scale), grad_queries, offsets).sum(dim=0)
        grad_bias = torch.add(torch.addcmul(grad_shift, gamma_hat, grad_shift), grad_queries, alpha=n).sum(dim=0)
        grad_weight, grad_offsets = grad_c * inv_std, grad_queries * c
        if ctx.use_batch:  # grad_weight * c * inv_std = grad_c * weight * inv_std^3, the variance's path
            grad_x = _batch_input_gradient(grad_y, centred, scale, grad_offsets, grad_total=c * grad_bias,
                                           grad_variance=grad_weight * c * inv_std)
        else:  # the running statistics are constants
            grad_x = torch.addcmul(_maps(grad_offsets), grad_y, scale)
        attention_t = attention.t()
        return (grad_x, grad_weight, grad_bias, grad_keys, torch.mm(attention_t, grad_gamma_hat),
                torch.mm(attention_t, grad_shift), -(grad_logits * logits).sum(), None, None, None, None, None, None)


def _batch_input_gradient(grad_y, centred, scale, grad_offsets, grad_total, grad_variance):
    """dL/dx with batch statistics: the direct path ``grad_y * scale`` and the paths through the examples'
    sums s_i, the batch sum s (in x - s / count and in the offsets s_i - s / N; ``grad_total`` is -count
    times its gradient, which is c times the BN bias's) and the variance (whose own path through s is zero:
    the centred values sum to zero)."""
    count = centred.numel() // centred.shape[1]
    per_example = torch.sub(grad_offsets, grad_total, alpha=1 / count)
    return torch.addcmul(_maps(per_example), centred, _maps(grad_variance), value=-1 / count).addcmul_(
        grad_y, scale)


def film_norm_layer(where: str = "all", **options) -> Callable[[int, bool], nn.Module]:
    """A `norm_layer(num_channels, last_in_stage)` for `create_backbone`.

    ``"all"`` wraps every BatchNorm; ``"last"`` only the last BN of each stage (cheaper), the
    others stay plain nn.BatchNorm2d. ``options`` go to every ``FiLMDictionary``.
    """
    check_option("where", where, WHERE)
    with torch.random.fork_rng(devices=[]):  # fail now, not at the first layer the backbone builds, drawing nothing
        FiLMDictionary(1, **options)

    def norm_layer(num_channels: int, last_in_stage: bool = False) -> nn.Module:
        if where == "all" or last_in_stage:
            return FiLMBatchNorm2d(num_channels, **options)
        return nn.BatchNorm2d(num_channels)

    return norm_layer
