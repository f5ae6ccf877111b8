"""The inner loop: finetune the head for each input on its attention-weighted neighbours (Eqs. 1-3).

Two implementations of the same mathematics, and the oracle's plain loop:

* ``generic`` is built on ``torch.func`` (``functional_call``, ``grad``, ``vmap``) and works for any
  head. It is the oracle the tests compare everything else against.
* ``fast`` paths use the structure of particular heads; each lives beside its head and is registered
  with it (``heads/base.py``). ``auto`` takes the head's fast path when it has one.
* ``loop`` runs the oracle one input at a time, a Python loop instead of ``vmap``: the reference the benchmarks
  time the others against.

Meta-gradients are second order by default. ``first_order=True`` drops the derivatives of the inner
gradient with respect to the adapted head parameters (the Hessian terms); keys, values, attention and
step size still receive gradients through it, so the dictionary keeps learning.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn.modules.batchnorm import _BatchNorm

from .config import IMPLEMENTATIONS, MNConfig
from .heads import adapted_parameter_names, fast_path_for, takes_top_k
from .inner_loss import InnerLoop, Params, TopK, inner_loss
from .validation import ConfigError, check_option


class StepSize(nn.Module):
    """The learned inner step size alpha: one scalar, one per adapted tensor ("layer": each layer's weight and
    bias find their own pace, as MAML++'s per-layer rates), or one entry per adapted weight ("diagonal").

    Stored signed and used as ``|alpha|``, as in the authors' code, so it stays non-negative.
    """

    def __init__(self, shapes: dict[str, torch.Size], kind: str, init: float):
        super().__init__()
        self.kind, self.names = kind, list(shapes)
        if kind == "scalar":
            self.alpha = nn.Parameter(torch.tensor(float(init)))
        else:
            self.alpha = nn.ParameterList(nn.Parameter(torch.full(shape if kind == "diagonal" else (), float(init)))
                                          for shape in shapes.values())

    def forward(self) -> Params:
        if self.kind == "scalar":
            return dict.fromkeys(self.names, self.alpha.abs())
        return {name: a.abs() for name, a in zip(self.names, self.alpha)}

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, adapted={self.names}"


class Adaptation(nn.Module):
    """Per-input finetuning of a head: ``inner_steps`` gradient steps of size alpha on the neighbours' loss.

    ``implementation`` may be changed after construction (the tests and the ONNX export switch it).
    """

    def __init__(self, head: nn.Module, config: MNConfig):
        super().__init__()
        self.task, self.steps, self.first_order = config.task, config.inner_steps, config.first_order
        self.implementation = config.implementation
        _check_per_input(head)
        names = adapted_parameter_names(head, config.adapt)
        if not names:
            raise ConfigError(f"{type(head).__name__} has no parameters for the inner loop to finetune (adapt="
                              f"{config.adapt!r}): Meta-Neighborhoods adapts a head's parameters to each input", "head")
        shapes = {n: p.shape for n, p in head.named_parameters() if n in names}
        self.step_size = StepSize(shapes, config.step_size, config.step_size_init)
        _check_implementation(head, self.step_size.names, self.implementation)

    def forward(self, head, z, keys, values, weights) -> torch.Tensor:
        """Predictions (B, out) of the head adapted to each row of z (B, d) with attention ``weights``: (B, S), or
        ``TopK`` on S keys, which only fast paths registered with ``top_k=True`` take as it is."""
        choice, path = self.implementation, _check_implementation(head, self.step_size.names, self.implementation)
        loop = InnerLoop(self.task, self.steps, self.step_size(), self.first_order)
        fast = choice in ("auto", "fast") and path is not None
        if isinstance(weights, TopK) and not (fast and takes_top_k(path)):
            weights = weights.dense(keys.shape[0])
        if fast:
            return path(head, z, keys, values, weights, loop)
        return adapt_generic(head, z, keys, values, weights, loop, python_loop=choice == "loop")

    def extra_repr(self) -> str:
        return (f"task={self.task!r}, inner_steps={self.steps}, first_order={self.first_order}, "
                f"implementation={self.implementation!r}")


def _check_per_input(head: nn.Module) -> None:
    """Refuse a head that normalises by its batch: it is finetuned on one input's neighbours and then applied to
    that one input, so batch statistics have no batch, and their running averages cannot update inside the
    per-input gradient."""
    norms = [name or type(head).__name__ for name, m in head.named_modules() if isinstance(m, _BatchNorm)]
    if norms:
        raise ConfigError(f"the head holds batch normalisation ({', '.join(norms)}), which a head finetuned per "
                          "input cannot use: put it in the extractor, or use nn.LayerNorm in the head", "head")


def _check_implementation(head: nn.Module, names: list[str], choice: str):
    """``head``'s fast path for the parameters ``names`` (None where it has none); an implementation other than
    IMPLEMENTATIONS, or ``fast`` where there is no fast path, is refused (set after construction too)."""
    check_option("implementation", choice, IMPLEMENTATIONS)
    path = fast_path_for(head, names)
    if choice == "fast" and path is None:
        raise ValueError(f"no fast adaptation path for {type(head).__name__}; use implementation='generic'")
    return path


def adapt_generic(head: nn.Module, z, keys, values, weights, loop: InnerLoop,
                  python_loop: bool = False) -> torch.Tensor:
    """The oracle: each example's own inner loop, vectorised with vmap (or a plain Python loop)."""
    params = dict(head.named_parameters())
    adapted = {n: params[n] for n in loop.names}
    fixed = {n: p for n, p in params.items() if n not in adapted}

    def inner(p: Params, w: torch.Tensor) -> torch.Tensor:
        out = functional_call(head, {**fixed, **p}, (keys,))
        return (w * inner_loss(loop.task, out, values)).sum()

    def predict_one(w: torch.Tensor, z_i: torch.Tensor) -> torch.Tensor:
        p = adapted
        for _ in range(loop.steps):
            at = {n: t.detach() for n, t in p.items()} if loop.first_order else p
            g = grad(inner)(at, w)
            p = {n: p[n] - loop.alphas[n] * g[n] for n in p}
        return functional_call(head, {**fixed, **p}, (z_i[None],))[0]

    if python_loop:
        return torch.stack([predict_one(w, z_i) for w, z_i in zip(weights, z)])
    return vmap(predict_one, randomness="different")(weights, z)  # dropout in a head: each input its own draw
