"""Training-side batching: loaded data in, seeded and resumable mini-batches (with augmentation) out.

Loading and checking files is ``images.py``'s job; everything here is about the order and form in which
training sees the data, so that a run can be reproduced and resumed batch for batch.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from ..validation import ConfigError, is_int
from .augmentation import CUTOUT, crop_flip, paper_augment
from .images import ImageSplit

__all__ = ["TensorBatches", "ImageBatches"]
AUGMENTERS = {"none": None, "crop_flip": crop_flip, "paper": paper_augment}  # each (uint8 batch, generator)


class TensorBatches:
    """Shuffled mini-batches of in-memory tensors, reproducible through a seeded generator. With ``inputs`` > 1,
    the first ``inputs`` tensors are the model's inputs and come as one tuple: ``((x, own_slot), y)``."""

    def __init__(self, *tensors: torch.Tensor, batch_size: int, shuffle: bool = True, seed: int = 0,
                 inputs: int = 1):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {batch_size}", "batch_size")
        self.tensors, self.batch_size, self.shuffle, self.inputs = tensors, batch_size, shuffle, inputs
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.tensors[0]) // self.batch_size)

    def state_dict(self) -> dict:
        """Where the shuffling stands (JSON-able), so a resumed run draws the same batches."""
        return {"generator": self.generator.get_state().tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        n = len(self.tensors[0])
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for start in range(0, n, self.batch_size):
            index = order[start : start + self.batch_size]
            batch = tuple(t[index] for t in self.tensors)
            yield batch if self.inputs == 1 else (batch[: self.inputs], *batch[self.inputs :])


class ImageBatches:
    """Mini-batches ``(x, y)`` of one split: x float32 ``(B, C, H, W)`` normalised with mean/std, y int64.

    Every pass draws fresh randomness (shuffle order, crops, flips) from ``(seed, epoch)``; the epoch counts
    passes and is part of ``state_dict()``, so a resumed run sees the same batches as an uninterrupted one.
    ``subset`` keeps the first ``subset`` images of a permutation drawn from ``seed`` (fixed across epochs) for
    quick CPU runs. ``augment="crop_flip"`` zero-pads by 4 pixels, takes a random crop of the original size and
    flips half the images horizontally (standard CIFAR); ``"paper"`` adds AutoAugment and Cutout (``augmentation.py``). ``shard=(rank, world_size)``: this process takes every
    ``world_size``-th image of each global batch of ``batch_size`` (a multiple of ``world_size``; multi-process
    training), the last global batch cut to a multiple of ``world_size`` (so that every process's mean loss
    weighs its images as one process would), and augments them with draws of its own.
    """

    def __init__(
        self,
        split: ImageSplit,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        batch_size: int = 128,
        shuffle: bool = False,
        seed: int = 0,
        augment: str = "none",
        subset: int | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        # Settings, not file contents, so ConfigError (a usage error on the command line).
        if augment not in AUGMENTERS:
            raise ConfigError(f"augment must be one of {', '.join(AUGMENTERS)}, got {augment!r}")
        if augment == "paper" and min(split.images.shape[2:]) <= CUTOUT:
            raise ConfigError(f"--augment paper cuts a {CUTOUT} x {CUTOUT} square out of each image, which hides "
                              f"most or all of images of {'x'.join(map(str, split.images.shape[2:]))} pixels (it is "
                              "made for CIFAR's 32 x 32): choose the data set's own augmentation", "augment")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {batch_size}", "batch_size")
        if len(mean) != split.images.shape[1] or len(std) != split.images.shape[1]:
            raise ConfigError(f"mean/std need one value per channel ({split.images.shape[1]})")
        if not 0 <= shard[0] < shard[1] <= batch_size:
            raise ConfigError(f"shard (rank, world size) = {shard} needs 0 <= rank < world size <= batch size")
        if batch_size % shard[1]:  # equal shares: DistributedDataParallel averages the processes' mean losses
            raise ConfigError(f"batch_size {batch_size} must be a multiple of the {shard[1]} processes, so that each "
                              "takes an equal share of every batch", "batch_size")
        self.split, self.batch_size, self.shuffle, self.seed, self.augment = split, batch_size, shuffle, seed, augment
        self.shard = shard
        self.indices = np.arange(len(split))
        if subset is not None:
            if not 1 <= subset <= len(split):
                raise ConfigError(f"train_subset must be in 1..{len(split)}, got {subset}", "train_subset")
            self.indices = np.sort(np.random.default_rng(seed).permutation(len(split))[:subset])
        if len(self.indices) < shard[1]:  # each process takes an equal share of a batch: none would train
            raise ConfigError(f"{len(self.indices)} image(s) cannot be shared among {shard[1]} processes, each of "
                              "which takes one a step at least: train on more (--train-subset), or run fewer",
                              "train_subset")
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.epoch = 0

    def __len__(self) -> int:
        """The batches an epoch yields: a last one of fewer images than the processes is cut to none."""
        full, rest = divmod(len(self.indices), self.batch_size)
        return full + (rest >= self.shard[1])

    def state_dict(self) -> dict:
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        epoch = state["epoch"]
        if not (is_int(epoch) and 0 <= epoch < 2**63):  # it seeds the epoch's shuffle
            raise ValueError(f"the batches' epoch should be a count of epochs, got {epoch!r:.60}")
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        state = np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]
        generator = torch.Generator().manual_seed(int(state))
        self.epoch += 1
        order = self.indices
        if self.shuffle:
            order = order[torch.randperm(len(order), generator=generator).numpy()]
        rank, world_size = self.shard
        augmenting = generator if world_size == 1 else torch.Generator().manual_seed(  # each process its own draws
            int(np.random.SeedSequence([self.seed, self.epoch - 1, rank]).generate_state(1)[0]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            batch = batch[: len(batch) - len(batch) % world_size]  # the last one too: equal shares, or none
            if len(batch) == 0:
                break
            batch = batch[rank::world_size]
            x = torch.from_numpy(self.split.images[batch])
            if AUGMENTERS[self.augment] is not None:
                x = AUGMENTERS[self.augment](x, augmenting)
            yield (x.float().div_(255) - self.mean) / self.std, torch.from_numpy(self.split.labels[batch])

