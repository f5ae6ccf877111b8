"""A training run's whole state: the optimiser it builds (``OptimizerSpec``), ``TrainingState``, the one writer and
reader of checkpoint ``last`` (an exact resume), and ``Carried``, the same state kept in memory from one call of
``fit`` to the next (``partial_fit``'s)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import checkpoint
from .validation import is_int, shown


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


@dataclass
class Carried:
    """A run's state from one call of ``fit`` to the next (``partial_fit``'s), so that calls of one epoch train as
    one run of many would: ``before`` is where this call starts (empty: afresh), ``after`` where it ended, on the CPU.
    It holds the parameters as trained (not the average early stopping keeps), AdamW's moments by parameter name (a
    changed learning rate or weight decay takes effect), the shuffle's and torch's generators, and the weight
    average (``fit_early_stopping``); not a schedule's epoch, so ``fit`` refuses it with ``milestones``, nor the
    state of callbacks other than the batches'. ``before`` is never changed: a call that raises leaves it as it
    was."""

    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)


def check_configuration(meta: dict, config: dict | None, source: str) -> None:
    """Refuse checkpoint metadata ``meta`` (from ``source``) written under another configuration than ``config``
    (None: no check), naming where they differ."""
    if config is not None and meta.get("config") != config:
        check_processes(_processes(meta.get("config")), _processes(config), source)  # what to do differs: say it
        raise checkpoint.CheckpointError(f"{source} was written by a run with another configuration "
                                         f"({_differences(meta.get('config'), config)}); resume it with its own "
                                         "settings")


def check_processes(there, here: int, source) -> None:
    """Refuse to resume on ``here`` processes a run that ``source`` says trained on ``there`` (an int; else no
    check): it would be another run."""
    if is_int(there) and there != here:
        launch = "plain python" if there == 1 else f"torchrun --nproc_per_node {there}"
        raise checkpoint.CheckpointError(f"{source} was written by a run of {there} process(es), and this one runs "
                                         f"{here}: resume it with as many ({launch})")


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

    def carried(self) -> dict:
        """Where this run stands, as ``Carried.after`` keeps it (copies, on the CPU)."""
        names = {p: name for name, p in self.model.named_parameters()}
        device = next(self.model.parameters()).device
        return {"parameters": _on_cpu(self.model.state_dict()),
                "moments": {names[p]: _on_cpu(entries) for p, entries in self.optimizer.state.items()},
                "torch": torch.get_rng_state(), "step": self.step,
                **({"cuda": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}),
                **({"batches": self.stateful["batches"].state_dict()} if "batches" in self.stateful else {})}

    def go_on(self, carried: dict) -> None:
        """Continue from ``carried`` (``Carried.before``), which is left as it was."""
        self.model.load_state_dict(carried["parameters"])
        optimised = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
        for name, p in self.model.named_parameters():
            if id(p) in optimised and name in carried["moments"]:
                self.optimizer.state[p] = {k: v.to(p.device, copy=True) if torch.is_tensor(v) else v
                                           for k, v in carried["moments"][name].items()}
        torch.set_rng_state(carried["torch"])
        device = next(self.model.parameters()).device
        if "cuda" in carried and device.type == "cuda":
            torch.cuda.set_rng_state(carried["cuda"], device)
        if "batches" in carried and "batches" in self.stateful:
            self.stateful["batches"].load_state_dict(carried["batches"])
        self.step = carried["step"]

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
        unknown = _unknown_states(meta.get("stateful"), self.stateful)
        if unknown:  # another version's or an edited state: it would be dropped without a word
            raise checkpoint.CheckpointError(f"{source}: unknown state {shown(unknown[0])}, which this run never "
                                             "saves")
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
        if not (type(epoch) is int and 0 <= epoch <= epochs and type(step) is int
                and epoch <= step < checkpoint.MAX_STEPS and isinstance(history, list) and len(history) == epoch
                and all(type(loss) in (int, float) for loss in history)):
            raise checkpoint.CheckpointError(f"{source}: epoch {epoch!r}, step {step!r} and a history of "
                                             f"{len(history) if isinstance(history, list) else history!r} losses "
                                             f"do not describe a run of {epochs} epochs")


def _unknown_states(saved, stateful: dict) -> list[str]:
    """The names in a checkpoint's ``saved`` states that none of ``stateful`` has, nor, within the state of one of
    the package's own (whose keys are fixed; a caller's callback may name its own as it goes), its ``state_dict``."""
    if not isinstance(saved, dict):
        return []
    own = {name: obj for name, obj in stateful.items() if type(obj).__module__.startswith(__package__ + ".")}
    return sorted(set(saved) - set(stateful)) + sorted(
        f"{name}.{key}" for name, obj in own.items() if isinstance(saved.get(name), dict)
        for key in set(saved[name]) - set(obj.state_dict()))


def _on_cpu(tensors: dict) -> dict:
    return {name: t.detach().to("cpu", copy=True) if torch.is_tensor(t) else t for name, t in tensors.items()}


def _epochs_named(state) -> list:
    """The epochs a saved state names: its own ``epoch`` (a best epoch, the epochs batches have drawn) and its
    records' (a history's, a log's rows)."""
    if not isinstance(state, dict):
        return []
    records = [record for value in state.values() if isinstance(value, list) for record in value
               if isinstance(record, dict)]
    return [record["epoch"] for record in (state, *records) if "epoch" in record]


MOMENTS = ("step", "exp_avg", "exp_avg_sq")  # AdamW's state of one parameter


def carried_to_file(carried: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """``Carried.after`` (of an estimator's fit, whose batches are ``TensorBatches``) as a checkpoint holds it:
    (tensors, JSON). A CUDA generator's state is not kept: a call after ``load`` draws on the GPU afresh."""
    tensors = {"torch": carried["torch"], **checkpoint.with_prefix("parameters.", carried["parameters"])}
    for name, entries in carried["moments"].items():
        tensors.update({f"moments.{key}.{name}": entries[key] for key in MOMENTS})
    meta = {"step": carried["step"], "batches": carried["batches"]}
    if carried.get("average") is not None:
        tensors.update(checkpoint.with_prefix("average.", carried["average"]["average"]))
        meta["average"] = {"decay": carried["average"]["decay"], "steps": carried["average"]["steps"]}
    return tensors, meta


def carried_from_file(tensors: dict[str, torch.Tensor], meta, model: nn.Module, source: str) -> dict:
    """The inverse of ``carried_to_file``, every field checked against ``model`` (the network it goes on with) and
    against the others; a damaged one is a one-line CheckpointError naming ``source``."""
    try:
        return _checked_carry(tensors, meta, model)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as error:
        said = " ".join(str(error).split())
        raise checkpoint.CheckpointError(f"{source}: partial_fit's carried training state is damaged "
                                         f"({type(error).__name__}: {said:.200})") from None


def _checked_carry(tensors: dict[str, torch.Tensor], meta: dict, model: nn.Module) -> dict:
    """``carried_from_file``'s checks; each raises naming what it found wrong."""
    parameters, step = dict(model.named_parameters()), meta["step"]
    if not (set(meta) <= {"step", "batches", "average"} and set(meta["batches"]) == {"generator"}):
        raise ValueError(f"unknown entries {sorted(set(meta) - {'step', 'batches', 'average'})!r:.80}")
    if not (is_int(step) and 0 < step < checkpoint.MAX_STEPS):
        raise ValueError(f"step should be a positive count of steps, got {step!r:.40}")
    carried = {"parameters": _like(checkpoint.take_prefix("parameters.", tensors), model.state_dict(), "parameters"),
               "torch": _generator_state(tensors["torch"]), "step": step,
               "moments": _moments(tensors, parameters, step),
               "batches": {"generator": _generator_state(meta["batches"]["generator"]).tolist()}}
    prefixes = ("parameters.", *(f"moments.{key}." for key in MOMENTS))
    if "average" in meta:
        carried["average"], prefixes = _average(tensors, meta["average"], parameters, step), (*prefixes, "average.")
    unknown = sorted(name for name in tensors if name != "torch" and not name.startswith(prefixes))
    if unknown:
        raise ValueError(f"unknown tensors {', '.join(repr(name)[:60] for name in unknown[:3])}")
    return carried


def _generator_state(state) -> torch.Tensor:
    """A CPU generator's state (a uint8 tensor, or the list of its bytes that ``TensorBatches`` keeps), refused
    unless a generator takes it (mt19937 refuses, among others, a state of zeros)."""
    if isinstance(state, list) and len(state) == len(torch.get_rng_state()) and all(
            type(v) is int and 0 <= v < 256 for v in state):
        state = torch.tensor(state, dtype=torch.uint8)
    if not (torch.is_tensor(state) and state.dtype == torch.uint8 and state.shape == torch.get_rng_state().shape):
        raise ValueError("a generator's state is not one: not the bytes of a CPU generator's")
    torch.Generator().set_state(state)
    return state


def _moments(tensors: dict[str, torch.Tensor], parameters: dict, step: int) -> dict:
    """AdamW's state by parameter name: whole, shaped and typed like its parameter, finite, a second moment that is
    not negative, a step count (a 0-d float, as the fused kernel takes it) of at most the run's steps."""
    moments = {}
    for key in MOMENTS:
        for name, t in checkpoint.take_prefix(f"moments.{key}.", tensors).items():
            moments.setdefault(name, {})[key] = t
    for name, entry in moments.items():
        count = entry.get("step")
        if not (name in parameters and checkpoint.complete_moments(entry, parameters[name])
                and count.dtype in (torch.float32, torch.float64) and count.dim() == 0 and 0 < count.item() <= step
                and all(torch.isfinite(t).all() for t in entry.values()) and (entry["exp_avg_sq"] >= 0).all()):
            raise ValueError(f"the moments of {name!r:.80} are incomplete, misshapen, not finite or negative, or "
                             f"count other steps than the run's {step}")
    return moments


def _average(tensors: dict[str, torch.Tensor], meta: dict, parameters: dict, step: int) -> dict:
    """The weight average: a decay in (0, 1), a count of at most the run's steps, a tensor like each parameter."""
    decay, steps = meta["decay"], meta["steps"]
    if not (set(meta) == {"decay", "steps"} and type(decay) is float and 0 < decay < 1 and is_int(steps)
            and 0 < steps <= step):
        raise ValueError(f"the weight average's decay {decay!r:.40} or steps {steps!r:.40} are not valid "
                         f"(steps: from 1 to the run's {step})")
    return {"decay": decay, "steps": steps,
            "average": _like(checkpoint.take_prefix("average.", tensors), parameters, "the weight average")}


def _like(tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], what: str) -> dict:
    """``tensors``, refused unless they are ``expected``'s names, shapes and types, and finite."""
    if tensors.keys() != expected.keys() or not all(
            tensors[n].shape == t.shape and tensors[n].dtype == t.dtype and torch.isfinite(tensors[n]).all()
            for n, t in expected.items()):
        raise ValueError(f"{what} are not the network's: names, shapes or types differ, or values are not finite")
    return tensors
