"""The inner loop: finetune the head for each input on its attention-weighted neighbours (Eqs. 1-3).

Two implementations of the same mathematics:

* ``generic`` is built on ``torch.func`` (``functional_call``, ``grad``, ``vmap``) and works for any
  head. It is the oracle the tests compare everything else against.
* ``fast`` paths use the structure of particular heads. At the first step every example starts
  from the same phi, so its inner gradient is an attention-weighted mix of S per-key gradients the
  whole batch shares; for linear layers that mix never needs per-example weights (DESIGN.md).

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


def _inner_grads(loss: torch.Tensor, inputs: list[torch.Tensor], keep_graph: bool) -> tuple[torch.Tensor, ...]:
    """Gradients of the inner loss; differentiable (``keep_graph``) when the outer step needs them."""
    return torch.autograd.grad(loss, inputs, create_graph=keep_graph)


def _tracked(t: torch.Tensor) -> torch.Tensor:
    """t itself when autograd tracks it, else a leaf that does (evaluation under no_grad, frozen heads)."""
    return t if t.requires_grad else t.detach().requires_grad_()


def _batched_steps(adaptation, head, fixed, params, alphas, keys, values, weights, steps) -> Params:
    """Further inner steps on per-example parameters (leading batch dimension), by ordinary autograd.

    Examples are independent, so the gradient of the summed loss with respect to example i's
    parameters is example i's own inner gradient.
    """
    forward = vmap(lambda p: functional_call(head, {**fixed, **p}, (keys,)))
    keep_graph = torch.is_grad_enabled()
    for _ in range(steps):
        at = {n: (t.detach().requires_grad_() if adaptation.first_order else _tracked(t)) for n, t in params.items()}
        with torch.enable_grad():
            loss = (weights * inner_loss(adaptation.task, forward(at), values)).sum()
            grads = _inner_grads(loss, list(at.values()), keep_graph)
        params = {n: params[n] - alphas[n] * g for n, g in zip(params, grads)}
    return params


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


def adapt_mlp(adaptation, head: MLPHead, z, keys, values, weights) -> torch.Tensor:
    """Fast path for linear and MLP heads, adapted in full or in the last layer."""
    adapted, fixed = _split(adaptation, head)
    alphas, n_layers = adaptation.step_size(), len(head.layers)
    params = {**fixed, **{n: (p.detach() if adaptation.first_order else p) for n, p in adapted.items()}}
    keep_graph = torch.is_grad_enabled()
    with torch.enable_grad():  # the inner gradient is needed even when evaluating
        h, inputs, pre = keys, [], []
        for i in range(n_layers):
            inputs.append(h)
            a = _tracked(F.linear(h, params[f"layers.{i}.weight"], params[f"layers.{i}.bias"]))
            pre.append(a)
            h = F.relu(a) if i < n_layers - 1 else a
        loss = inner_loss(adaptation.task, h, values).sum()  # per-key losses: grad w.r.t. pre = per-key deltas
        tuned = [i for i in range(n_layers) if f"layers.{i}.weight" in adapted]
        deltas = dict(zip(tuned, _inner_grads(loss, [pre[i] for i in tuned], keep_graph)))

    if adaptation.steps == 1:
        x = z
        for i, layer in enumerate(head.layers):
            a = layer(x)
            if i in deltas:
                names = (f"layers.{i}.weight", f"layers.{i}.bias")
                a = a - _linear_correction(weights, deltas[i], inputs[i], x, alphas[names[0]], alphas[names[1]])
            x = F.relu(a) if i < n_layers - 1 else a
        return x

    per_example = {}
    for i, delta in deltas.items():
        w_name, b_name = f"layers.{i}.weight", f"layers.{i}.bias"
        per_example[w_name] = adapted[w_name] - alphas[w_name] * torch.einsum("bs,so,si->boi", weights, delta, inputs[i])
        per_example[b_name] = adapted[b_name] - alphas[b_name] * (weights @ delta)
    per_example = _batched_steps(adaptation, head, fixed, per_example, alphas, keys, values, weights, adaptation.steps - 1)
    return vmap(lambda p, z_i: functional_call(head, {**fixed, **p}, (z_i[None],))[0])(per_example, z)


def adapt_cosine(adaptation, head: CosineHead, z, keys, values, weights) -> torch.Tensor:
    """Fast path for the cosine classifier: its inner gradient in closed form, per-example prototypes (B, d, C).

    For prototype column c with unit direction u_c, d logit_jc / d W_c = tau / |W_c| (I - u_c u_c^T) n(k_j),
    so the step needs only m_ic = sum_j w_ij r_jc n(k_j): O(B S d C), never a per-example backward pass.
    """
    alpha = adaptation.step_size()["weight"]
    tau, unit_keys = head.scale, F.normalize(keys, dim=-1)
    weight = head.weight.expand(len(z), *head.weight.shape)
    keep_graph = torch.is_grad_enabled()
    for _ in range(adaptation.steps):
        at = weight.detach() if adaptation.first_order else weight
        norms = at.norm(dim=1, keepdim=True)  # (B, 1, C)
        units = at / norms
        with torch.enable_grad():
            logits = _tracked(tau * torch.einsum("sd,bdc->bsc", unit_keys, units))
            (residual,) = _inner_grads(inner_loss(adaptation.task, logits, values).sum(), [logits], keep_graph)
        mixed = torch.einsum("bs,bsc,sd->bdc", weights, residual, unit_keys)
        along = (units * mixed).sum(dim=1, keepdim=True)
        weight = weight - alpha * tau * (mixed - units * along) / norms
    return tau * torch.einsum("bd,bdc->bc", F.normalize(z, dim=-1), F.normalize(weight, dim=1))


FAST_PATHS: dict[type, Callable] = {MLPHead: adapt_mlp, CosineHead: adapt_cosine}
