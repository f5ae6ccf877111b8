"""What a head must provide, and the registry that pairs a head class with its fast inner loop.

The head contract (``Head``): any ``nn.Module`` with

* ``in_features``: the feature dimension, where the dictionary's keys live;
* ``out_features``: the target dimension, or the number of classes (the values' dimension);
* optionally ``adapted_parameter_names(adapt)``: which of its parameters the inner loop finetunes for
  ``adapt="all"`` and ``adapt="last"`` (default: all of them; the parameters of the last module that has any);
* no batch normalisation (refused: the head is finetuned and applied one input at a time); dropout draws
  anew for each input;
* optionally ``decays_weight = False`` on the head or any submodule whose parameters weight decay must not touch
  (default: weight decay on every parameter with two or more dimensions, see ``decayed_parameter_names``);
* optionally ``body(x)`` and ``last_layer``, an ``nn.Linear`` with a bias, where ``forward(x)`` is
  ``last_layer(body(x))`` and the body never reads the last layer's parameters: registered with
  ``heads.last_layer_path``, ``adapt="last"`` adapts that layer on the fast path of linear layers (the body's
  features are computed once for the batch and once for the keys; a dropout in the body draws once for the keys,
  not anew for each input's copy of them).

A head with a closed-form inner loop registers it with ``@fast_path(HeadClass)``; ``fast_path_for`` finds it by
exact type, because a subclass may change the forward pass the closed form relies on. Heads without one run
through the generic ``torch.func`` oracle in ``adaptation.py``; so does a head registered for its last layer alone
(``last_layer=True``) when it adapts more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from ..inner_loss import InnerLoop
from ..validation import ConfigError, check_int, is_int

FastPath = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, InnerLoop], torch.Tensor]
"""``path(head, z (B, d), keys (S, d), values (S, out), weights (B, S), loop) -> predictions (B, out)``."""

FAST_PATHS: dict[type, FastPath] = {}


def check_widths(owner: str, **widths) -> list[int]:
    """A head's ``widths`` (features, units, counts) as ints, each a positive integer: else one ConfigError, the same
    for every head, naming ``owner`` and the argument."""
    return [check_int(f"{owner}'s {name}", value) for name, value in widths.items()]


def check_hidden(owner: str, hidden, hint: str = "") -> list[int]:
    """``owner``'s hidden-layer widths as ints (``check_widths``); an integer for them is refused, with ``hint``."""
    if is_int(hidden):
        raise ConfigError(f"{owner}'s hidden must be a sequence of layer widths, got {hidden!r}{hint}")
    return check_widths(owner, **{f"hidden[{i}]": width for i, width in enumerate(hidden)})


@runtime_checkable
class Head(Protocol):
    """The part of the model finetuned for each input (see the module docstring for the optional parts)."""

    in_features: int
    out_features: int

    def __call__(self, z: torch.Tensor) -> torch.Tensor: ...


def fast_path(head_type: type, top_k: bool = False, last_layer: bool = False) -> Callable[[FastPath], FastPath]:
    """Register the decorated function as ``head_type``'s closed-form inner loop; ``top_k=True`` says it takes
    top-k attention (``inner_loss.TopK``) as it is, rather than as a dense (B, S) matrix; ``last_layer=True`` that
    it adapts the head's declared last layer alone (``last_layer_names``), and applies only where that is adapted."""

    def register(path: FastPath) -> FastPath:
        path.takes_top_k, path.last_layer = top_k, last_layer
        FAST_PATHS[head_type] = path
        return path

    return register


def takes_top_k(path: FastPath) -> bool:
    return getattr(path, "takes_top_k", False)


def fast_path_for(head: nn.Module, adapted: list[str] | None = None) -> FastPath | None:
    """The closed-form inner loop of this head's exact type, or None when only the generic one applies: a path of
    the last layer alone applies where the ``adapted`` parameters are that layer's."""
    path = FAST_PATHS.get(type(head))
    if path is not None and getattr(path, "last_layer", False):
        last = last_layer_names(head)
        return path if last and adapted is not None and sorted(adapted) == sorted(last) else None
    return path


def last_layer_names(head: nn.Module) -> list[str]:
    """The weight's and bias's names of the ``last_layer`` a head declares beside its ``body``; [] where it has no
    such ``nn.Linear`` with a bias, or where those tensors are also another module's (tied: the body would read
    them, and adapting them would change it)."""
    layer = getattr(head, "last_layer", None)
    if not (callable(getattr(head, "body", None)) and isinstance(layer, nn.Linear) and layer.bias is not None):
        return []
    elsewhere = {id(p) for name, p in head.named_parameters(remove_duplicate=False)
                 if not name.startswith("last_layer.")}
    return [] if {id(layer.weight), id(layer.bias)} & elsewhere else ["last_layer.weight", "last_layer.bias"]


def adapted_parameter_names(head: nn.Module, adapt: str) -> list[str]:
    """The head's parameters the inner loop finetunes: all of them, or those of its last layer."""
    if hasattr(head, "adapted_parameter_names"):
        return head.adapted_parameter_names(adapt)
    names = [name for name, _ in head.named_parameters()]
    if adapt == "all":
        return names
    owners = [m for m in head.modules() if any(True for _ in m.parameters(recurse=False))]
    last = {id(p) for p in owners[-1].parameters(recurse=False)} if owners else set()
    return [name for name, p in head.named_parameters() if id(p) in last]


def decayed_parameter_names(module: nn.Module) -> list[str]:
    """Parameters weight decay applies to: weight matrices and kernels (two or more dimensions), except in
    submodules that declare ``decays_weight = False`` (e.g. the cosine head: decay would only shrink its
    scale-free prototypes; the iFiLM dictionaries)."""
    exempt = {id(p) for m in module.modules() if not getattr(m, "decays_weight", True) for p in m.parameters()}
    return [name for name, p in module.named_parameters() if p.ndim >= 2 and id(p) not in exempt]
