"""The images of a classify run: the seeded validation split held out of the training split, the batches each part
is read in, and the evaluation of a network on them (Table 1's protocol, ``classification.py``)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from .. import distributed
from ..config import VALIDATION_FRACTION, VALIDATION_MAX, ClassificationConfig
from ..datasets.batches import ImageBatches
from ..datasets.images import ImageDataset, ImageSplit
from ..validation import ConfigError


class Splits(NamedTuple):
    train: ImageSplit
    validation: ImageSplit
    test: ImageSplit
    train_index: np.ndarray  # indices into the data set's train split
    validation_index: np.ndarray


def training_images(dataset: ImageDataset) -> int:
    """How many training images are left once the validation split is held out."""
    return len(dataset.train) - _validation_images(len(dataset.train))


def _validation_images(n: int) -> int:
    return min(VALIDATION_MAX, max(1, round(VALIDATION_FRACTION * n)))


def split_validation(dataset: ImageDataset, seed: int) -> Splits:
    """A seeded random ``VALIDATION_FRACTION`` of the training images (at most ``VALIDATION_MAX``) held out."""
    n_validation = _validation_images(n := len(dataset.train))
    if n_validation >= n:
        raise ValueError(f"the training split has {n} images, too few to hold out a validation split")
    order = np.random.default_rng(seed).permutation(n)
    train_index, validation_index = np.sort(order[n_validation:]), np.sort(order[:n_validation])

    def part(index: np.ndarray) -> ImageSplit:
        return ImageSplit(dataset.train.images[index], dataset.train.labels[index])

    return Splits(part(train_index), part(validation_index), dataset.test, train_index, validation_index)


def check_key_images(config: ClassificationConfig, images: int) -> None:
    """``key_init="samples"`` starts each key at one of the ``images`` the run trains on: refused, before any
    folder, where they are fewer than the keys (a key drawn twice would start as another's copy)."""
    if config.key_init == "samples" and config.dictionary_size is not None and config.dictionary_size > images:
        raise ConfigError(f"--key-init samples starts each of the {config.dictionary_size} keys at a training image, "
                          f"and the run trains on {images}: give --dictionary-size {images} or fewer, or --key-init "
                          "gaussian", "key_init")


def batches(split: ImageSplit, dataset: ImageDataset, config: ClassificationConfig, training: bool = False):
    """Normalised batches; shuffling, augmentation and ``train_subset`` apply to training batches only."""
    if not training:
        return ImageBatches(split, dataset.mean, dataset.std, batch_size=config.batch_size)
    return ImageBatches(split, dataset.mean, dataset.std, batch_size=config.batch_size, shuffle=True,
                        seed=config.seed, augment=dataset.augment if config.augment == "dataset" else config.augment,
                        subset=config.train_subset,
                        shard=(distributed.rank(), distributed.world_size()))


@torch.no_grad()
def evaluate(model: nn.Module, batches, device: torch.device) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of the predictions in evaluation mode (all dictionary slots, BN running stats)."""
    model.eval()
    correct = total = loss = 0.0
    for x, y in batches:
        logits = model(x.to(device)).cpu()
        correct += (logits.argmax(dim=1) == y).sum().item()
        loss += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        total += len(y)
    return correct / total, loss / total
