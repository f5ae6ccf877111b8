"""Linear and MLP heads, and their fast inner loop.

At the first step every example starts from the same phi, so its inner gradient is an attention-weighted mix
of S per-key gradients the whole batch shares; for linear layers that mix never needs per-example weights
(``_linear_correction``). Later steps, and the diagonal step size, carry per-example weights (B, out, in).
Inner gradients are written out by explicit backpropagation (``loss_gradient``), not taken with
``torch.autograd.grad``: evaluation needs no autograd, and a model exports to ONNX inner loop included.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..inner_loss import InnerLoop, TopK, gather_rows, loss_gradient
from .base import check_hidden, check_widths, fast_path, last_layer_names


class MLPHead(nn.Module):
    """Linear layers with ReLU between them (none after the last). No hidden layers = a linear head."""

    def __init__(self, in_features: int, hidden: Sequence[int] = (), out_features: int = 1):
        super().__init__()
        hidden = check_hidden("MLPHead", hidden, " (as a head factory it would take n_outputs for it: use the "
                              "estimators' hidden_layer_sizes)")  # MLPHead(n_features, n_outputs), as factories call
        in_features, out_features = check_widths("MLPHead", in_features=in_features, out_features=out_features)
        widths = [in_features, *hidden, out_features]
        self.in_features, self.out_features = in_features, out_features
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x

    def adapted_parameter_names(self, adapt: str) -> list[str]:
        layers = range(len(self.layers)) if adapt == "all" else [len(self.layers) - 1]
        return [name for i in layers for name in _layer_names(i)]


def LinearHead(in_features: int, out_features: int = 1) -> MLPHead:
    """A linear head ``A z + b`` (the spiral toy's logistic model)."""
    return MLPHead(in_features, (), out_features)


Layers = list[tuple[torch.Tensor, torch.Tensor]]  # (weight, bias) per layer: (out, in) shared, (B, out, in) per example


def _layer_names(i: int) -> tuple[str, str]:
    return f"layers.{i}.weight", f"layers.{i}.bias"


def _mlp_forward(layers: Layers, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Each layer's input and pre-activation; matmul broadcasts shared and per-example weights alike."""
    inputs, pre = [], []
    for i, (weight, bias) in enumerate(layers):
        inputs.append(x)
        pre.append(x @ weight.transpose(-1, -2) + bias.unsqueeze(-2))
        x = F.relu(pre[-1]) if i < len(layers) - 1 else pre[-1]
    return inputs, pre


def _mlp_deltas(loop: InnerLoop, layers: Layers, tuned: list[int], keys, values,
                weights=None, start: int = 0) -> tuple[list[torch.Tensor], dict[int, torch.Tensor]]:
    """Backpropagation of the per-key inner losses: each layer's input, and the loss gradient at the
    pre-activation of every tuned layer: per key (S, out), or with ``weights`` (B, S) example b's weighted
    share (B, S, out). ``first_order`` takes it at tuned parameters cut from the outer graph. ``keys`` are
    the input of layer ``start``, at or below the first tuned one (the inputs below it are left None)."""
    at = [(w.detach(), b.detach()) if loop.first_order and i in tuned else (w, b)
          for i, (w, b) in enumerate(layers)]
    inputs, pre = _mlp_forward(at[start:], keys)
    inputs, pre = [None] * start + inputs, [None] * start + pre
    top = loss_gradient(loop.task, pre[-1], values)
    deltas = {len(at) - 1: top if weights is None else weights[..., None] * top}
    for i in range(len(at) - 1, min(tuned), -1):
        deltas[i - 1] = (deltas[i] @ at[i][0]) * (pre[i - 1] > 0)
    return inputs, deltas


def _linear_correction(weights, delta, inputs, query, alpha_w, alpha_b) -> torch.Tensor:
    """How one inner step changes a linear layer's output at ``query`` (B, in), without per-example weights.

    The layer's inner gradient for example i is sum_j w_ij delta_j [inputs_j, 1]^T, so its adapted
    output moves by sum_j w_ij delta_j (alpha_w inputs_j . query_i + alpha_b): one (B, S) Gram matrix
    and one mix per layer. A diagonal alpha needs the per-example gradient itself, but still no loop.
    With top-k attention only each example's K keys enter: O(B K (in + out)) whatever S is.
    """
    if isinstance(weights, TopK):
        return _top_k_correction(weights, delta, inputs, query, alpha_w, alpha_b)
    if alpha_w.ndim == 0:
        return (weights * (alpha_w * (query @ inputs.T) + alpha_b)) @ delta
    grad_w = torch.einsum("bs,so,si->boi", weights, delta, inputs)
    return torch.einsum("boi,oi,bi->bo", grad_w, alpha_w, query) + alpha_b * (weights @ delta)


def _top_k_correction(top: TopK, delta, inputs, query, alpha_w, alpha_b) -> torch.Tensor:
    """``_linear_correction`` on each example's own K keys, gathered: O(B K (in + out)) whatever S is."""
    delta, inputs = gather_rows(delta, top.index), gather_rows(inputs, top.index)  # (B, K, out), (B, K, in)
    if alpha_w.ndim == 0:
        gram = (inputs * query[:, None]).sum(-1)  # elementwise: a (B, K) batch of dot products is no GEMM
        return ((top.weight * (alpha_w * gram + alpha_b))[..., None] * delta).sum(1)
    grad_w = torch.einsum("bk,bko,bki->boi", top.weight, delta, inputs)
    return torch.einsum("boi,oi,bi->bo", grad_w, alpha_w, query) + alpha_b * (top.weight[..., None] * delta).sum(1)


def _mlp_step(loop: InnerLoop, layers: Layers, names: list[tuple[str, str]], tuned: list[int], keys, values,
              weights, start: int) -> Layers:
    """One inner step with per-example results: tuned layers come out (B, out, in), the others stay shared."""
    inputs, deltas = _mlp_deltas(loop, layers, tuned, keys, values, weights, start)
    stepped = list(layers)
    for i in tuned:  # example b's gradient: its weighted deltas times the layer's inputs, summed over keys
        (weight, bias), (w_name, b_name) = layers[i], names[i]
        stepped[i] = (weight - loop.alphas[w_name] * (deltas[i].transpose(-1, -2) @ inputs[i]),
                      bias - loop.alphas[b_name] * deltas[i].sum(-2))
    return stepped


def adapt_layers(layers: Layers, names: list[tuple[str, str]], z, keys, values, weights,
                 loop: InnerLoop) -> torch.Tensor:
    """The inner loop of linear layers with ReLU between them, ``layers`` (weight, bias) named ``names``, those
    named in ``loop.alphas`` adapted: the fast path of MLP heads, and of any head's last linear layer.

    One step shares the per-key backpropagation across the batch; later steps are per example, so with top-k
    attention each example then carries its own K keys (B, K, d) through them. The layers below the first tuned
    one never change: the keys pass through them once, shared, whatever the number of steps.
    """
    tuned = [i for i, (w_name, _) in enumerate(names) if w_name in loop.alphas]
    if loop.steps > 1:
        start = min(tuned)
        for weight, bias in layers[:start]:  # never the last layer, so always followed by a ReLU
            keys = F.relu(keys @ weight.T + bias)
        if isinstance(weights, TopK):
            index, weights = weights.index, weights.weight
            keys, values = gather_rows(keys, index), gather_rows(values, index)
        for _ in range(loop.steps):
            layers = _mlp_step(loop, layers, names, tuned, keys, values, weights, start)
        return _mlp_forward(layers, z[:, None])[1][-1][:, 0]

    inputs, deltas = _mlp_deltas(loop, layers, tuned, keys, values)
    x = z
    for i, (weight, bias) in enumerate(layers):
        a = F.linear(x, weight, bias)
        if i in tuned:
            w_name, b_name = names[i]
            a = a - _linear_correction(weights, deltas[i], inputs[i], x, loop.alphas[w_name], loop.alphas[b_name])
        x = F.relu(a) if i < len(layers) - 1 else a
    return x


@fast_path(MLPHead, top_k=True)
def adapt_mlp(head: MLPHead, z, keys, values, weights, loop: InnerLoop) -> torch.Tensor:
    """Fast path for linear and MLP heads, adapted in full or in the last layer (``adapt_layers``)."""
    names = [_layer_names(i) for i in range(len(head.layers))]
    return adapt_layers([(layer.weight, layer.bias) for layer in head.layers], names, z, keys, values, weights, loop)


def adapt_last_layer(head: nn.Module, z, keys, values, weights, loop: InnerLoop) -> torch.Tensor:
    """Fast path for the last linear layer a head declares, adapted alone: linear layers' path on the body's features,
    which the inner loop does not change."""
    layer = head.last_layer
    return adapt_layers([(layer.weight, layer.bias)], [tuple(last_layer_names(head))], head.body(z), head.body(keys),
                        values, weights, loop)


def last_layer_path(head_type: type) -> type:
    """Class decorator: ``head_type`` declares its last layer (``body(x)``, ``last_layer``: the head contract), and
    ``adapt="last"`` adapts that layer on ``adapt_last_layer``. Registered by exact type, as every fast path: a
    subclass may change the forward pass."""
    fast_path(head_type, top_k=True, last_layer=True)(adapt_last_layer)
    return head_type
