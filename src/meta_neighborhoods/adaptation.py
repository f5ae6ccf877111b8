"""The inner loop: finetune the head for each input on its attention-weighted neighbours (Eqs. 1-3).

Two implementations of the same mathematics:

* ``generic`` is built on ``torch.func`` (``functional_call``, ``grad``, ``vmap``) and works for any
  head. It is the oracle the tests compare everything else against.
* ``fast`` paths use the structure of particular heads. At the first step every example starts
  from the same phi, so its inner gradient is an attention-weighted mix of S per-key gradients the
  whole batch shares; for linear layers that mix never needs per-example weights (DESIGN.md).
  Their inner gradients are written out (``loss_gradient``, explicit backpropagation), not taken with
  ``torch.autograd.grad``: evaluation needs no autograd, and a model exports to ONNX inner loop included.

Meta-gradients are second order by default. ``first_order=True`` drops the derivatives of the inner
gradient with respect to the adapted head parameters (the Hessian terms); keys, values, attention and
step size still receive gradients through it, so the dictionary keeps learning.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from .heads import CosineHead, MLPHead, adapted_parameter_names
from .similarity import check_option

STEP_SIZES = ("scalar", "diagonal")
ADAPT = ("all", "last")
IMPLEMENTATIONS = ("auto", "fast", "generic", "loop")

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


class StepSize(nn.Module):
    """The learned inner step size alpha: one scalar, or one entry per adapted weight (diagonal).

    Stored signed and used as ``|alpha|``, as in the authors' code, so it stays non-negative.
    """

    def __init__(self, shapes: dict[str, torch.Size], kind: str = "scalar", init: float = 0.05):
        super().__init__()
        check_option("step size", kind, STEP_SIZES)
        if not init > 0:
            raise ValueError(f"initial step size must be positive, got {init}")
        self.kind, self.names = kind, list(shapes)
        if kind == "scalar":
            self.alpha = nn.Parameter(torch.tensor(float(init)))
        else:
            self.alpha = nn.ParameterList(nn.Parameter(torch.full(shape, float(init))) for shape in shapes.values())

    def forward(self) -> Params:
        if self.kind == "scalar":
            return dict.fromkeys(self.names, self.alpha.abs())
        return {name: a.abs() for name, a in zip(self.names, self.alpha)}


class Adaptation(nn.Module):
    """Per-input finetuning of a head: ``steps`` gradient steps of size alpha on the neighbours' loss."""

    def __init__(
        self,
        head: nn.Module,
        task: str,
        steps: int = 1,
        step_size: str = "scalar",
        step_size_init: float = 0.05,
        adapt: str = "all",
        first_order: bool = False,
        implementation: str = "auto",
    ):
        super().__init__()
        check_option("adapt", adapt, ADAPT)
        check_option("implementation", implementation, IMPLEMENTATIONS)
        if not (isinstance(steps, int) and steps >= 1):
            raise ValueError(f"inner steps must be a positive integer, got {steps!r}")
        self.task, self.steps, self.adapt = task, steps, adapt
        self.first_order, self.implementation = first_order, implementation
        self.names = adapted_parameter_names(head, adapt)
        shapes = dict((n, p.shape) for n, p in head.named_parameters() if n in self.names)
        self.step_size = StepSize(shapes, step_size, step_size_init)

    def fast_path(self, head: nn.Module) -> Callable | None:
        """The closed-form implementation for this head, or None when only the generic one applies."""
        return FAST_PATHS.get(type(head))  # exact type: a subclass may change the forward pass

    def forward(self, head, z, keys, values, weights) -> torch.Tensor:
        """Predictions (B, out) of the head adapted to each row of z (B, d) with attention ``weights`` (B, S)."""
        choice = self.implementation
        path = self.fast_path(head)
        if choice == "fast" and path is None:
            raise ValueError(f"no fast adaptation path for {type(head).__name__}; use implementation='generic'")
        if choice in ("auto", "fast") and path is not None:
            return path(self, head, z, keys, values, weights)
        return adapt_generic(self, head, z, keys, values, weights, loop=choice == "loop")


def _split(adaptation: Adaptation, head: nn.Module) -> tuple[Params, Params]:
    params = dict(head.named_parameters())
    adapted = {n: params[n] for n in adaptation.names}
    fixed = {n: p for n, p in params.items() if n not in adapted}
    return adapted, fixed


def adapt_generic(adaptation, head, z, keys, values, weights, loop: bool = False) -> torch.Tensor:
    """The oracle: each example's own inner loop, vectorised with vmap (or a plain Python loop)."""
    adapted, fixed = _split(adaptation, head)
    alphas, task = adaptation.step_size(), adaptation.task

    def inner(p: Params, w: torch.Tensor) -> torch.Tensor:
        out = functional_call(head, {**fixed, **p}, (keys,))
        return (w * inner_loss(task, out, values)).sum()

    def predict_one(w: torch.Tensor, z_i: torch.Tensor) -> torch.Tensor:
        p = adapted
        for _ in range(adaptation.steps):
            at = {n: t.detach() for n, t in p.items()} if adaptation.first_order else p
            g = grad(inner)(at, w)
            p = {n: p[n] - alphas[n] * g[n] for n in p}
        return functional_call(head, {**fixed, **p}, (z_i[None],))[0]

    if loop:
        return torch.stack([predict_one(w, z_i) for w, z_i in zip(weights, z)])
    return vmap(predict_one)(weights, z)


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


def _mlp_deltas(adaptation, layers: Layers, tuned: list[int], keys, values,
                weights=None) -> tuple[list[torch.Tensor], dict[int, torch.Tensor]]:
    """Backpropagation of the per-key inner losses: each layer's input, and the loss gradient at the
    pre-activation of every tuned layer: per key (S, out), or with ``weights`` (B, S) example b's weighted
    share (B, S, out). ``first_order`` takes it at tuned parameters cut from the outer graph."""
    at = [(w.detach(), b.detach()) if adaptation.first_order and i in tuned else (w, b)
          for i, (w, b) in enumerate(layers)]
    inputs, pre = _mlp_forward(at, keys)
    top = loss_gradient(adaptation.task, pre[-1], values)
    deltas = {len(at) - 1: top if weights is None else weights[..., None] * top}
    for i in range(len(at) - 1, min(tuned), -1):
        deltas[i - 1] = (deltas[i] @ at[i][0]) * (pre[i - 1] > 0)
    return inputs, deltas


def _linear_correction(weights, delta, inputs, query, alpha_w, alpha_b) -> torch.Tensor:
    """How one inner step changes a linear layer's output at ``query`` (B, in), without per-example weights.

    The layer's inner gradient for example i is sum_j w_ij delta_j [inputs_j, 1]^T, so its adapted
    output moves by sum_j w_ij delta_j (alpha_w inputs_j . query_i + alpha_b): one (B, S) Gram matrix
    and one mix per layer. A diagonal alpha needs the per-example gradient itself, but still no loop.
    """
    if alpha_w.ndim == 0:
        return (weights * (alpha_w * (query @ inputs.T) + alpha_b)) @ delta
    grad_w = torch.einsum("bs,so,si->boi", weights, delta, inputs)
    return torch.einsum("boi,oi,bi->bo", grad_w, alpha_w, query) + alpha_b * (weights @ delta)


def _mlp_step(adaptation, layers: Layers, tuned: list[int], alphas: Params, keys, values, weights) -> Layers:
    """One inner step with per-example results: tuned layers come out (B, out, in), the others stay shared."""
    inputs, deltas = _mlp_deltas(adaptation, layers, tuned, keys, values, weights)
    stepped = list(layers)
    for i in tuned:  # example b's gradient: its weighted deltas times the layer's inputs, summed over keys
        (weight, bias), names = layers[i], _layer_names(i)
        stepped[i] = (weight - alphas[names[0]] * (deltas[i].transpose(-1, -2) @ inputs[i]),
                      bias - alphas[names[1]] * deltas[i].sum(-2))
    return stepped


def adapt_mlp(adaptation, head: MLPHead, z, keys, values, weights) -> torch.Tensor:
    """Fast path for linear and MLP heads, adapted in full or in the last layer."""
    alphas, params = adaptation.step_size(), dict(head.named_parameters())
    layers = [tuple(params[name] for name in _layer_names(i)) for i in range(len(head.layers))]
    tuned = [i for i in range(len(layers)) if _layer_names(i)[0] in adaptation.names]
    if adaptation.steps > 1:
        for _ in range(adaptation.steps):
            layers = _mlp_step(adaptation, layers, tuned, alphas, keys, values, weights)
        return _mlp_forward(layers, z[:, None])[1][-1][:, 0]

    inputs, deltas = _mlp_deltas(adaptation, layers, tuned, keys, values)
    x = z
    for i, layer in enumerate(head.layers):
        a = layer(x)
        if i in tuned:
            names = _layer_names(i)
            a = a - _linear_correction(weights, deltas[i], inputs[i], x, alphas[names[0]], alphas[names[1]])
        x = F.relu(a) if i < len(layers) - 1 else a
    return x


def adapt_cosine(adaptation, head: CosineHead, z, keys, values, weights) -> torch.Tensor:
    """Fast path for the cosine classifier: its inner gradient in closed form, per-example prototypes (B, d, C).

    For prototype column c with unit direction u_c, d logit_jc / d W_c = tau / |W_c| (I - u_c u_c^T) n(k_j),
    so the step needs only m_ic = sum_j w_ij r_jc n(k_j): O(B S d C), never a per-example backward pass.
    """
    alpha = adaptation.step_size()["weight"]
    tau, unit_keys = head.scale, F.normalize(keys, dim=-1)
    weight = head.weight.expand(z.shape[0], *head.weight.shape)  # shape[0]: a symbolic batch size for export
    for _ in range(adaptation.steps):
        at = weight.detach() if adaptation.first_order else weight
        norms = at.norm(dim=1, keepdim=True)  # (B, 1, C)
        units = at / norms
        residual = loss_gradient(adaptation.task, tau * torch.einsum("sd,bdc->bsc", unit_keys, units), values)
        mixed = torch.einsum("bs,bsc,sd->bdc", weights, residual, unit_keys)
        along = (units * mixed).sum(dim=1, keepdim=True)
        weight = weight - alpha * tau * (mixed - units * along) / norms
    return tau * torch.einsum("bd,bdc->bc", F.normalize(z, dim=-1), F.normalize(weight, dim=1))


FAST_PATHS: dict[type, Callable] = {MLPHead: adapt_mlp, CosineHead: adapt_cosine}
