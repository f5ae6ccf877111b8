"""Bring your own network: the estimators' ``head`` and ``extractor`` factories (as skorch's ``module``), called with
the sizes fit finds and checked before training starts, so that a wrong one is named, not met deep inside torch.

* ``head(n_features, n_outputs) -> nn.Module`` meets the head contract (``heads/base.py``): its ``in_features``
  and ``out_features`` are the sizes it was asked for. The heads the package registers keep their fast path
  (``MLPHead``, ``CosineHead``, and ``PeriodicMLPHead`` where the last layer alone is adapted); any other runs the
  generic ``torch.func`` inner loop.
* ``extractor(n_features) -> nn.Module`` maps rows (n, n_features) to features (n, m): the dictionary's keys
  live there, and the head is asked for ``m`` inputs.

A factory's own settings go in with it (``functools.partial(MyHead, width=64)``), which scikit-learn clones and
grid-searches like any parameter value, and which pickles where ``MyHead`` is defined at a module's top level (a
lambda does not). Without factories: the MLP head of ``hidden_layer_sizes`` on the rows themselves, the paper's
setting for tables (``MLPHead(in_features, hidden, out_features)`` takes its sizes around its widths: use
``hidden_layer_sizes``, not a factory).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from torch import nn

from .estimator_settings import method_config
from .heads import MLPHead, PeriodicMLPHead
from .model import MetaNeighborhoods
from .validation import ConfigError, check_option, is_int

FACTORIES = ("head", "extractor")  # the estimators' parameters that take a factory
CALLS = {"head": "head(n_features, n_outputs)", "extractor": "extractor(n_features)"}
NAMED_HEADS = {  # config.HEADS, built: a head=NAME is a setting (JSON, save, the command line), not code
    "mlp": lambda n_features, n_outputs, hidden: MLPHead(n_features, hidden, n_outputs),
    "periodic": lambda n_features, n_outputs, hidden: PeriodicMLPHead(n_features, n_outputs, hidden),
}


def build_extractor(factory, n_features: int) -> tuple[nn.Module | None, int]:
    """(extractor, the number of features it gives) for rows of ``n_features``; (None, n_features) without one."""
    if factory is None:
        return None, n_features
    call, extractor = _call("extractor", factory, n_features)
    shape = _output_shape(call, extractor, n_features)
    if len(shape) != 2 or shape[1] < 1:
        raise ConfigError(f"{call} answers 2 rows with shape {tuple(shape)}: the head needs a matrix (rows, features) "
                          "with at least one feature")
    return extractor, shape[1]


def hidden_widths(hidden: int | Sequence[int]) -> tuple[int, ...]:
    """``hidden_layer_sizes`` as a tuple of widths: one int is one hidden layer, as ``MLPRegressor`` takes it."""
    return (int(hidden),) if is_int(hidden) else tuple(int(h) for h in hidden)


def build_head(factory, n_features: int, n_outputs: int, hidden: int | Sequence[int]) -> nn.Module:
    """The head for ``n_features`` inputs and ``n_outputs`` outputs: a factory's, or a head the package ships by its
    name (``NAMED_HEADS``), of ``hidden`` widths; the MLP of ``hidden`` without either."""
    if factory is None or isinstance(factory, str):
        check_option("head", "mlp" if factory is None else factory, NAMED_HEADS)
        return NAMED_HEADS["mlp" if factory is None else factory](n_features, n_outputs, hidden_widths(hidden))
    call, head = _call("head", factory, n_features, n_outputs)
    sizes = getattr(head, "in_features", None), getattr(head, "out_features", None)
    if sizes != (n_features, n_outputs):
        raise ConfigError(f"{call} returned a head with in_features={sizes[0]!r} and out_features={sizes[1]!r}; the "
                          f"head contract (heads/base.py) needs in_features={n_features} and out_features={n_outputs}")
    shape = _output_shape(call, head, n_features)
    if tuple(shape) != (2, n_outputs):
        raise ConfigError(f"{call} answers 2 rows with shape {tuple(shape)}, not (2, {n_outputs})")
    return head


def build_network(estimator, n_features: int, n_outputs: int, dictionary_size: int, similarity: str,
                  temperature: float, extractor: nn.Module | None = None,
                  key_features: int | None = None) -> MetaNeighborhoods:
    """The network of ``estimator`` that its ``network_`` describes (fit trains it, ``load`` and a warm start fill it,
    ``save`` compares it with the fitted one); the head takes the ``key_features`` of ``extractor`` (without one,
    the rows themselves). Called under ``training.torch_globals``, as every caller is: it draws initial weights."""
    head = build_head(estimator.head, key_features or n_features, n_outputs, estimator.hidden_layer_sizes)
    return MetaNeighborhoods(head, method_config(estimator, dictionary_size, similarity, temperature),
                             extractor=extractor)


def _call(name: str, factory, *sizes: int) -> tuple[str, nn.Module]:
    """(the call in words, for messages; the module it returned)."""
    if isinstance(factory, nn.Module) or not callable(factory):
        names = f", one of {', '.join(map(repr, NAMED_HEADS))}" if name == "head" else ""
        raise ConfigError(f"{name} must be None{names} or a callable returning a torch.nn.Module (a class or a "
                          f"function, not a built module), got {factory!r:.80}")
    call = f"{name}({', '.join(map(str, sizes))})"
    try:
        inspect.signature(factory).bind(*sizes)
    except TypeError as error:  # a factory that does not take the sizes as they are given
        raise ConfigError(f"{call} cannot be called ({error}); a {name} factory is called as {CALLS[name]}") from None
    except ValueError:  # no signature to read (some builtins): the call itself will say
        pass
    module = factory(*sizes)
    if not isinstance(module, nn.Module):
        raise ConfigError(f"{call} returned {type(module).__name__}, not a torch.nn.Module")
    return call, module


@torch.no_grad()
def _output_shape(call: str, module: nn.Module, n_features: int) -> torch.Size:
    """The shape of ``module``'s answer to two rows of zeros, in evaluation mode: no batch statistic is touched."""
    training = module.training
    try:
        out = module.eval()(torch.zeros(2, n_features))
    except (RuntimeError, TypeError, ValueError, IndexError) as error:
        reason = (str(error).splitlines() or [""])[0]
        raise ConfigError(f"{call} cannot take rows of {n_features} features ({type(error).__name__}: "
                          f"{reason})") from None
    finally:
        module.train(training)
    if not isinstance(out, torch.Tensor):
        raise ConfigError(f"{call} answers rows with {type(out).__name__}, not a tensor")
    return out.shape
