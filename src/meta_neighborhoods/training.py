"""One training loop for every experiment: optimiser, schedule, clipping, progress, and a NaN guard."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from . import checkpoint, distributed
from .similarity import check_option

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, otherwise the CPU; asking for CUDA without one is an error."""
    check_option("device", name, DEVICES)
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but no CUDA GPU is available; use --device cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on the extractor's and head's weight matrices and kernels only.

    Never on the dictionary, the temperature, the step size or the iFiLM dictionaries (as the authors),
    nor on biases, normalisation parameters and scales (tensors with fewer than two dimensions), nor in
    modules that declare ``decays_weight = False`` (the cosine head: decay only rescales its prototypes).
    """
    exempt = ("dictionary.", "attention.", "adaptation.")
    scale_free = {id(p) for m in model.modules() if not getattr(m, "decays_weight", True) for p in m.parameters()}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            skip = name.startswith(exempt) or ".film." in name or p.ndim < 2 or id(p) in scale_free
            (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class TensorBatches:
    """Shuffled mini-batches of in-memory tensors, reproducible through a seeded generator."""

    def __init__(self, *tensors: torch.Tensor, batch_size: int, shuffle: bool = True, seed: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.tensors, self.batch_size, self.shuffle = tensors, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.tensors[0]) / self.batch_size)

    def state_dict(self) -> dict:
        """Where the shuffling stands (JSON-able), so a resumed run draws the same batches."""
        return {"generator": self.generator.get_state().tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))

    def __iter__(self):
        n = len(self.tensors[0])
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for start in range(0, n, self.batch_size):
            index = order[start : start + self.batch_size]
            yield tuple(t[index] for t in self.tensors)


def _network(model: nn.Module) -> nn.Module:
    """What the forward pass runs through: ``model`` itself, or its DistributedDataParallel wrapper under torchrun."""
    if not distributed.is_active():
        return model
    device = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def fit(
    model: nn.Module,
    batches: Iterable,
    *,
    epochs: int,
    learning_rate: float = 1e-3,
    weight_decay: float = 0.0,
    grad_clip: float | None = None,
    milestones: Iterable[int] = (),
    device: torch.device | str = "cpu",
    on_epoch_end: Callable[[int, float], bool | None] | None = None,
    on_step: Callable[[int], None] | None = None,
    progress: bool = True,
    desc: str = "train",
    checkpoint: str | Path | None = None,
    resume: bool = False,
    stateful: dict | None = None,
    config: dict | None = None,
) -> list[float]:
    """Train ``model`` (which provides ``model.loss``) with AdamW; returns the mean loss of each epoch.

    The learning rate drops tenfold at each epoch in ``milestones``. ``on_epoch_end(epoch, loss)``
    may return True to stop early. A NaN or infinite loss stops training with an error naming the step.

    ``checkpoint`` (a path stem) receives the whole training state after every epoch: weights, optimiser,
    schedule, random number generators, ``config`` and the ``state_dict()`` of each ``stateful`` object (and
    of ``batches`` if it has one). ``resume=True`` restores all of it from there first, so a resumed run
    continues exactly as the uninterrupted one would. Under torchrun the model trains wrapped in
    DistributedDataParallel and only rank 0 writes the checkpoint.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be positive, got {epochs}")
    optimizer = torch.optim.AdamW(parameter_groups(model, weight_decay), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, sorted(milestones), gamma=0.1)
    stateful = {**(stateful or {}), **({"batches": batches} if hasattr(batches, "state_dict") else {})}
    state = TrainingState(model, optimizer, schedule, stateful, config)
    if resume:
        state.load(checkpoint)
    network = _network(model)
    bar = tqdm(range(state.epoch, epochs), desc=desc, disable=not progress or not distributed.is_main(),
               leave=False, initial=state.epoch, total=epochs)
    for epoch in bar:
        model.train()
        total, count = 0.0, 0
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            loss = model.loss(network(x), y)
            if not torch.isfinite(loss):
                kept = f"; the last good checkpoint (epoch {state.epoch}) is kept at {checkpoint}" if (
                    checkpoint is not None and state.epoch > 0) else ""
                raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch + 1}, step "
                                         f"{state.step + 1}: training stopped{kept}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_value_(model.parameters(), grad_clip)
            optimizer.step()
            state.step += 1
            total, count = total + loss.item() * len(x), count + len(x)
            if on_step is not None:
                on_step(state.step)
        schedule.step()
        state.history.append(distributed.mean(total, count))
        state.epoch = epoch + 1
        bar.set_postfix(loss=f"{state.history[-1]:.4f}", refresh=False)
        stop = on_epoch_end is not None and on_epoch_end(epoch, state.history[-1])
        if checkpoint is not None and distributed.is_main():
            state.save(checkpoint)
        if stop:
            break
    return state.history


class TrainingState:
    """Everything a run needs to continue exactly where it stopped, saved with ``checkpoint.save``."""

    def __init__(self, model: nn.Module, optimizer, schedule, stateful: dict, config: dict | None):
        self.model, self.optimizer, self.schedule = model, optimizer, schedule
        self.stateful, self.config = stateful, config
        self.epoch, self.step, self.history = 0, 0, []

    def save(self, stem: str | Path) -> None:
        optimizer_tensors, optimizer_meta = checkpoint.optimizer_state(self.optimizer)
        rng_tensors, rng_meta = checkpoint.rng_state()
        tensors = {**checkpoint.with_prefix("model.", self.model.state_dict()),
                   **checkpoint.with_prefix("optimizer.", optimizer_tensors),
                   **checkpoint.with_prefix("rng.", rng_tensors)}
        checkpoint.save(stem, tensors, {
            "epoch": self.epoch, "step": self.step, "history": self.history, "config": self.config,
            "optimizer": optimizer_meta, "scheduler": checkpoint.scheduler_state(self.schedule), "rng": rng_meta,
            "stateful": {name: obj.state_dict() for name, obj in self.stateful.items()},
        })

    def load(self, stem: str | Path) -> None:
        if stem is None:
            raise ValueError("resume=True needs the checkpoint to resume from")
        tensors, meta = checkpoint.load(stem)
        if self.config is not None and meta.get("config") != self.config:
            raise checkpoint.CheckpointError(f"{stem}.json was written by a run with another configuration; "
                                             "resume it with its own settings")
        checkpoint.load_module(self.model, checkpoint.take_prefix("model.", tensors), f"{stem}.json")
        checkpoint.load_optimizer(self.optimizer, checkpoint.take_prefix("optimizer.", tensors), meta["optimizer"])
        checkpoint.load_scheduler(self.schedule, meta["scheduler"])
        checkpoint.load_rng(checkpoint.take_prefix("rng.", tensors), meta["rng"])
        for name, obj in self.stateful.items():
            try:
                obj.load_state_dict(meta["stateful"][name])
            except KeyError as missing:
                raise checkpoint.CheckpointError(f"{stem}.json lacks {missing} for {name!r}: it was written by another "
                                                 "version of meta-neighborhoods; start the run afresh") from None
        self.epoch, self.step, self.history = meta["epoch"], meta["step"], meta["history"]
