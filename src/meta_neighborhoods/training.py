"""One training loop for every experiment: optimiser and schedule from one spec, clipping, a NaN guard,
callbacks for what differs between front ends, and the ``last`` checkpoint (the whole training state)."""

from __future__ import annotations

import contextlib
import copy
import math
import os
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from . import checkpoint, distributed
from .callbacks import BestEpoch, Callback, EarlyStopping, WeightAverage, lower_loss
from .validation import ConfigError, check_int, is_int


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


@dataclass(frozen=True)
class OptimizerSpec:
    """AdamW over ``model.parameter_groups(weight_decay, learning_rate)`` (each group with its learning rate); the
    learning rates drop tenfold after each epoch in ``milestones``; every gradient entry is clipped to +-``grad_clip``
    (None: no clipping)."""

    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    milestones: tuple[int, ...] = ()
    grad_clip: float | None = None

    def build(self, model: nn.Module):
        """(optimizer, scheduler) for ``model``."""
        groups = model.parameter_groups(self.weight_decay, self.learning_rate)
        optimizer = torch.optim.AdamW(groups, lr=self.learning_rate, fused=True)  # one kernel, not ~28 ops per tensor
        return optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, sorted(self.milestones), gamma=0.1)


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
        last: str | Path | None = None, resume: bool = False, config: dict | None = None) -> list[float]:
    """Train ``model`` (which provides ``loss`` and ``parameter_groups``); returns the mean loss of each epoch.

    ``batches`` yields ``(x, y)``, or ``(x, y, weight)`` with a weight per example, which ``model.loss`` takes;
    ``x`` may be a tuple of the model's inputs (``(x, own_slot)`` for leave-one-out).

    A NaN or infinite loss stops training with an error naming the step. ``last`` (the path stem of checkpoint ``last``) receives
    the whole training state after every epoch: weights, optimiser, schedule, random number generators,
    ``config`` and the ``state_dict()`` of every callback (and of ``batches``) that has one. ``resume=True``
    restores all of it from there first, so a resumed run continues exactly as the uninterrupted one would.
    Under torchrun the model trains wrapped in DistributedDataParallel and only rank 0 writes the checkpoint.
    """
    check_int("epochs", epochs)
    callbacks = dict(callbacks or {})
    stateful = {name: c for name, c in {**callbacks, "batches": batches}.items() if hasattr(c, "state_dict")}
    state = TrainingState(model, optimizer, stateful, config)
    if resume:
        state.load(last, epochs)
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
                       average: float | None = None, warm: bool = False, **options) -> EarlyStopped:
    """``fit`` (``options`` are its own) until the validation loss, or without ``validation_loss`` the epoch's
    training loss, has not beaten its best by more than ``tol`` for ``patience`` epochs; ``model`` is left with
    the weights of the best epoch. ``average`` (a decay in (0, 1)) measures and keeps, instead of the weights, their
    moving average over the steps (``WeightAverage``). A ``warm`` model (trained before) competes as epoch 0 where
    a validation loss measures it, so that a fit that only worsens it leaves it as it was."""
    measured, kept = [], {}
    averaged = {} if average is None else {"average": WeightAverage(model, average)}
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
        **averaged, "early_stopping": EarlyStopping(best, measure, patience), **(callbacks or {})}, **options)
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
                                     f"{state.step + 1}: training stopped{kept}")
        optimizer_step(model, optimizer, clip, loss)
        state.step += 1
        size = weight[0].sum().item() if weight else len(y)
        total, count = total + value * size, count + size
        for callback in callbacks.values():
            callback.on_step(state.step)
    return distributed.mean(total, count)


def check_configuration(meta: dict, config: dict | None, source: str) -> None:
    """Refuse checkpoint metadata ``meta`` (from ``source``) written under another configuration than ``config``
    (None: no check), naming where they differ."""
    if config is not None and meta.get("config") != config:
        there, here = (_processes(c) for c in (meta.get("config"), config))
        if there != here and is_int(there):  # what to do differs: say it (a run of one process records none)
            launch = "plain python" if there == 1 else f"torchrun --nproc_per_node {there}"
            raise checkpoint.CheckpointError(f"{source} was written by a run of {there} process(es), and this one "
                                             f"runs {here}: resume it with as many ({launch})")
        raise checkpoint.CheckpointError(f"{source} was written by a run with another configuration "
                                         f"({_differences(meta.get('config'), config)}); resume it with its own "
                                         "settings")


def _processes(config) -> int:
    """The processes a run's configuration says it trains on: one where it says none."""
    return config.get("processes", 1) if isinstance(config, dict) else 1


def _differences(saved, now: dict) -> str:
    """The settings on which a checkpoint's configuration and this run's differ, as 'name: saved there, now here'
    (the first three), so that a refused resume says what to change; the saved values are shown cut short."""
    if not isinstance(saved, dict):
        return "none recorded"
    saved, now = _flat(saved), _flat(now)
    names = [name for name in sorted({*saved, *now}) if saved.get(name) != now.get(name)]
    shown = [f"{name!s:.40}: {saved.get(name)!r:.40} there, {now.get(name)!r:.40} here" for name in names[:3]]
    return "; ".join(shown) + (f"; and {len(names) - 3} more" if len(names) > 3 else "")


def _flat(config: dict, prefix: str = "") -> dict:
    """A nested configuration as one level of dotted names: 'model.dictionary_size', not the whole 'model'."""
    flat = {}
    for name, value in config.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


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


class TrainingState:
    """Everything a run needs to continue exactly where it stopped; the one writer of the ``last`` checkpoint."""

    def __init__(self, model: nn.Module, spec: OptimizerSpec, stateful: dict, config: dict | None):
        self.model, self.spec, self.stateful, self.config = model, spec, stateful, config
        self.optimizer, self.schedule = spec.build(model)
        self.epoch, self.step, self.history = 0, 0, []

    def save(self, stem: str | Path) -> None:
        optimizer_tensors, optimizer_meta = checkpoint.optimizer_state(self.optimizer)
        rng_tensors, rng_meta = checkpoint.rng_state()
        tensors = {**checkpoint.network_tensors(self.model),
                   **checkpoint.with_prefix("optimizer.", optimizer_tensors),
                   **checkpoint.with_prefix("rng.", rng_tensors)}
        checkpoint.save(stem, tensors, {
            "epoch": self.epoch, "step": self.step, "history": self.history, "config": self.config,
            "optimizer": optimizer_meta, "rng": rng_meta,
            "stateful": {name: obj.state_dict() for name, obj in self.stateful.items()},
        })

    def load(self, stem: str | Path, epochs: int) -> None:
        """Restore everything from checkpoint ``stem`` of a run of ``epochs`` epochs; any field that is not what
        the configuration implies is a CheckpointError naming it."""
        if stem is None:
            raise ValueError("resume=True needs the checkpoint to resume from")
        tensors, meta = checkpoint.load(stem)
        source = f"{stem}.json"
        check_configuration(meta, self.config, source)
        self._check_progress(meta, epochs, source)
        checkpoint.load_network(self.model, tensors, source)
        moments = checkpoint.take_prefix("optimizer.", tensors)
        if meta["step"] > 0 and not moments:
            raise checkpoint.CheckpointError(f"{source} lacks the optimiser's moments after {meta['step']} steps")
        checkpoint.load_optimizer(self.optimizer, moments, meta.get("optimizer"), source)
        try:
            checkpoint.load_rng(checkpoint.take_prefix("rng.", tensors), meta["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, OverflowError) as error:
            raise checkpoint.CheckpointError(f"{source}: damaged random number generator state "
                                             f"({type(error).__name__}: {error})") from None
        with warnings.catch_warnings():  # stepping the schedule alone, to where the run stood, is the point here
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(meta["epoch"]):
                self.schedule.step()
        self._load_stateful(meta, source)
        self.epoch, self.step, self.history = meta["epoch"], meta["step"], meta["history"]

    def _load_stateful(self, meta: dict, source: str) -> None:
        """Each callback's state (and the batches'), none of which may count epochs past the checkpoint's: a best
        epoch still to come would keep its network over those the resumed run trains."""
        for name, obj in self.stateful.items():
            try:
                obj.load_state_dict(meta["stateful"][name])
            except KeyError as missing:
                raise checkpoint.CheckpointError(f"{source} lacks {missing} for {name!r}: it was written by another "
                                                 "version of meta-neighborhoods; start the run afresh") from None
            except (TypeError, ValueError, RuntimeError, IndexError, OverflowError, AttributeError) as error:
                raise checkpoint.CheckpointError(f"{source}: the state of {name!r} is damaged "
                                                 f"({type(error).__name__}: {error})") from None
            past = [epoch for epoch in _epochs_named(meta["stateful"][name])
                    if not (is_int(epoch) and 0 <= epoch <= meta["epoch"])]
            if past:
                raise checkpoint.CheckpointError(f"{source}: the state of {name!r} names epoch {past[0]!r:.40}, "
                                                 f"outside the {meta['epoch']} epochs the checkpoint has trained")

    @staticmethod
    def _check_progress(meta: dict, epochs: int, source: str) -> None:
        epoch, step, history = meta.get("epoch"), meta.get("step"), meta.get("history")
        if not (type(epoch) is int and 0 <= epoch <= epochs and type(step) is int and step >= epoch
                and isinstance(history, list) and len(history) == epoch
                and all(type(loss) in (int, float) for loss in history)):
            raise checkpoint.CheckpointError(f"{source}: epoch {epoch!r}, step {step!r} and a history of "
                                             f"{len(history) if isinstance(history, list) else history!r} losses "
                                             f"do not describe a run of {epochs} epochs")


def _epochs_named(state) -> list:
    """The epochs a saved state names: its own ``epoch`` (a best epoch, the epochs batches have drawn) and its
    records' (a history's, a log's rows)."""
    if not isinstance(state, dict):
        return []
    records = [record for value in state.values() if isinstance(value, list) for record in value
               if isinstance(record, dict)]
    return [record["epoch"] for record in (state, *records) if "epoch" in record]
