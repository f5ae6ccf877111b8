"""One training loop for every experiment: optimiser, schedule, clipping, progress, and a NaN guard."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

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

    def __iter__(self):
        n = len(self.tensors[0])
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for start in range(0, n, self.batch_size):
            index = order[start : start + self.batch_size]
            yield tuple(t[index] for t in self.tensors)


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
) -> list[float]:
    """Train ``model`` (which provides ``model.loss``) with AdamW; returns the mean loss of each epoch.

    The learning rate drops tenfold at each epoch in ``milestones``. ``on_epoch_end(epoch, loss)``
    may return True to stop early. A NaN or infinite loss stops training with an error naming the step.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be positive, got {epochs}")
    optimizer = torch.optim.AdamW(parameter_groups(model, weight_decay), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, sorted(milestones), gamma=0.1)
    history, step = [], 0
    bar = tqdm(range(epochs), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        total, count = 0.0, 0
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            loss = model.loss(model(x), y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch}, step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_value_(model.parameters(), grad_clip)
            optimizer.step()
            step += 1
            total, count = total + loss.item() * len(x), count + len(x)
            if on_step is not None:
                on_step(step)
        schedule.step()
        history.append(total / count)
        bar.set_postfix(loss=f"{history[-1]:.4f}", refresh=False)
        if on_epoch_end is not None and on_epoch_end(epoch, history[-1]):
            break
    return history
