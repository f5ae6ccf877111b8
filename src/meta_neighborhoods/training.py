"""One training loop for every experiment: clipping, a NaN guard, callbacks for what differs between front ends,
early stopping with the weight average; the state it trains from and keeps (optimiser, checkpoint ``last``, the
carry between ``partial_fit``'s calls) is ``training_state.py``'s."""

from __future__ import annotations

import contextlib
import copy
import math
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from . import distributed
from .callbacks import BestEpoch, Callback, EarlyStopping, WeightAverage, lower_loss
from .training_state import Carried, OptimizerSpec, TrainingState
from .validation import ConfigError, check_int


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, otherwise the CPU; any other torch device string ("cuda:1", "mps") is
    checked against what this machine has."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"unknown device {name!r}; expected 'auto' or a torch device such as 'cpu', 'cuda', "
                          "'cuda:1', 'mps'") from None
    if device.type == "cuda" and not (torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()):
        raise RuntimeError(f"device {name!r} was requested but this machine has {torch.cuda.device_count()} CUDA "
                           "GPU(s); use 'cpu' or 'auto'")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"device {name!r} was requested but MPS is not available here; use 'cpu' or 'auto'")
    return device


_TORCH_GLOBALS = threading.RLock()  # held by torch_globals: see there


def _new_lock_after_fork() -> None:
    """A child forked while a thread of its parent held the lock inherits it held, by a thread it does not have."""
    global _TORCH_GLOBALS
    _TORCH_GLOBALS = threading.RLock()


os.register_at_fork(after_in_child=_new_lock_after_fork)


@contextlib.contextmanager
def torch_globals(rng_devices: list | None = None):
    """Inside: torch's default dtype is float32, as it was before a user changed that global, so that what the
    estimators build, draw and compute does not depend on it (their rows are float32); given ``rng_devices``, the
    random state (of the CPU and those devices) is the caller's again after. Both are process-wide, so whoever is
    inside holds a process-wide lock: fits and predictions in threads of one process take turns, each as it would
    run alone."""
    with _TORCH_GLOBALS, torch.random.fork_rng(devices=rng_devices or [], enabled=rng_devices is not None):
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float32)
        try:
            yield
        finally:
            torch.set_default_dtype(previous)


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """torch's CPU threads set to ``threads`` (None: left alone) while a run lasts, and restored after it: training
    sums in an order that depends on them, and a process may run more than once."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _network(model: nn.Module) -> nn.Module:
    """What the forward pass runs through: ``model`` itself, or its DistributedDataParallel wrapper under torchrun."""
    if not distributed.is_active():
        return model
    device = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def fit(model: nn.Module, batches: Iterable, *, epochs: int, optimizer: OptimizerSpec = OptimizerSpec(),
        device: torch.device | str = "cpu", callbacks: dict[str, Callback] | None = None,
        last: str | Path | None = None, resume: bool = False, config: dict | None = None,
        carried: Carried | None = None) -> list[float]:
    """Train ``model`` (which provides ``loss`` and ``parameter_groups``); returns the mean loss of each epoch.

    ``batches`` yields ``(x, y)``, or ``(x, y, weight)`` with a weight per example, which ``model.loss`` takes;
    ``x`` may be a tuple of the model's inputs (``(x, own_slot)`` for leave-one-out).

    A NaN or infinite loss stops training with an error naming the step. ``last`` (the path stem of checkpoint ``last``) receives
    the whole training state after every epoch: weights, optimiser, schedule, random number generators,
    ``config`` and the ``state_dict()`` of every callback (and of ``batches``) that has one. ``resume=True``
    restores all of it from there first, so a resumed run continues exactly as the uninterrupted one would.
    ``carried`` does the same in memory from one call to the next (``Carried``). Under torchrun the model trains
    wrapped in DistributedDataParallel and only rank 0 writes the checkpoint.
    """
    check_int("epochs", epochs)
    if carried is not None and optimizer.milestones:
        raise ConfigError("carried goes on without the schedule's epoch: it cannot be used with milestones")
    callbacks = dict(callbacks or {})
    stateful = {name: c for name, c in {**callbacks, "batches": batches}.items() if hasattr(c, "state_dict")}
    state = TrainingState(model, optimizer, stateful, config)
    if resume:
        state.load(last, epochs)
    elif carried is not None and carried.before:
        state.go_on(carried.before)
    network = _network(model)
    for callback in callbacks.values():
        callback.on_train_begin(state.epoch, epochs)
    try:
        for epoch in range(state.epoch, epochs):
            for callback in callbacks.values():
                callback.on_epoch_start(epoch, state.optimizer.param_groups[0]["lr"])
            loss = _train_epoch(state, network, batches, device, callbacks, last)
            state.schedule.step()
            state.history.append(loss)
            state.epoch = epoch + 1
            stop = [callback.on_epoch_end(epoch, loss) for callback in callbacks.values()]
            if last is not None and distributed.is_main():
                state.save(last)
            if any(stop):
                break
    finally:
        for callback in callbacks.values():
            callback.on_train_end()
    if carried is not None:
        carried.after.update(state.carried())
    return state.history


class EarlyStopped(NamedTuple):
    """What ``fit_early_stopping`` did: the training loss of every epoch, the loss that decided (validation, or
    training), and the best epoch (counted from 1) with its loss."""

    losses: list[float]
    measured: list[float]
    best_epoch: int
    best_loss: float

    def followed_by(self, then: EarlyStopped) -> EarlyStopped:
        """This run and ``then``, a warm run from the weights this one kept (its epoch 0): the epochs of both, and
        the best of both counted from this run's first epoch."""
        best = self.best_epoch if then.best_epoch == 0 else len(self.losses) + then.best_epoch
        return EarlyStopped(self.losses + then.losses, self.measured + then.measured, best, then.best_loss)


def fit_early_stopping(model: nn.Module, batches: Iterable, *, epochs: int, patience: int, tol: float = 0.0,
                       validation_loss: Callable[[], float] | None = None, callbacks: dict[str, Callback] | None = None,
                       average: float | None = None, warm: bool = False, carried: Carried | None = None,
                       **options) -> EarlyStopped:
    """``fit`` (``options`` are its own) until the validation loss, or without ``validation_loss`` the epoch's
    training loss, has not beaten its best by more than ``tol`` for ``patience`` epochs; ``model`` is left with
    the weights of the best epoch. ``average`` (a decay in (0, 1)) measures and keeps, instead of the weights, their
    moving average over the steps (``WeightAverage``). A ``warm`` model (trained before) competes as epoch 0 where
    a validation loss measures it, so that a fit that only worsens it leaves it as it was. ``carried`` (``Carried``)
    also carries the weight average."""
    measured, kept = [], {}
    averaged = {} if average is None else {"average": WeightAverage(model, average)}
    if averaged and carried is not None:
        averaged["average"].go_on(carried.before.get("average"))
    applied = averaged["average"].applied if averaged else contextlib.nullcontext

    def measure(train_loss: float) -> dict:
        with applied():
            measured.append(train_loss if validation_loss is None else validation_loss())
        return {"loss": measured[-1]}

    def keep(epoch: int, metrics: dict) -> None:
        with applied():
            kept.update(state=copy.deepcopy(model.state_dict()))

    best = BestEpoch(lower_loss(tol), {"loss": math.inf}, keep=keep)
    if warm and validation_loss is not None:
        best.update({"loss": validation_loss()}, 0)
    losses = fit(model, batches, epochs=epochs, callbacks={
        **averaged, "early_stopping": EarlyStopping(best, measure, patience), **(callbacks or {})},
        carried=carried, **options)
    if averaged and carried is not None:
        carried.after["average"] = averaged["average"].carried()
    if kept:
        model.load_state_dict(kept["state"])
    return EarlyStopped(losses, measured, best.epoch, float(best.best["loss"]))


def _train_epoch(state: TrainingState, network: nn.Module, batches: Iterable, device, callbacks: dict,
                 last) -> float:
    """One pass over ``batches`` of ``(x, y)`` or ``(x, y, weight)``; the mean loss over every process's examples
    (weighted: each batch counts with its total weight)."""
    model, optimizer, clip = state.model, state.optimizer, state.spec.grad_clip
    model.train()
    total, count = 0.0, 0
    for x, *targets in batches:
        inputs = tuple(t.to(device) for t in (x if isinstance(x, tuple) else (x,)))
        y, *weight = (t.to(device) for t in targets)
        loss = model.loss(network(*inputs), y, *weight)
        value = loss.item()  # read from the device once: its check and the epoch's mean both use it
        if not math.isfinite(value):
            kept = "" if last is None else (f"; the last good checkpoint (epoch {state.epoch}) is kept at {last}"
                                            if state.epoch > 0 else "; no epoch had finished, so it wrote no checkpoint")
            raise FloatingPointError(f"training loss became {value} at epoch {state.epoch + 1}, step "
                                     f"{state.step + 1}: training stopped{kept} (a lower learning rate may help)")
        optimizer_step(model, optimizer, clip, loss)
        state.step += 1
        size = weight[0].sum().item() if weight else len(y)
        total, count = total + value * size, count + size
        for callback in callbacks.values():
            callback.on_step(state.step)
    return distributed.mean(total, count)


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, clip: float | None, loss: torch.Tensor) -> None:
    """What every training step does with its loss: backward, clipping, the optimiser's step (benchmarks time it)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    clip_gradients(model, clip)
    optimizer.step()


def clip_gradients(model: nn.Module, clip: float | None) -> None:
    """Clip every gradient entry to +-``clip`` (None: leave them); the training loop's, and its benchmarks'."""
    if clip is not None:
        nn.utils.clip_grad_value_(model.parameters(), clip)
