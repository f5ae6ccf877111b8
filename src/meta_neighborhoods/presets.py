"""``classify --preset paper``: the authors' image protocol, per data set, as values of a classify run.

Every value comes from their code (``lupalab/Meta-Neighborhoods``; file and line of each below). What our runs
already share with theirs is not repeated here: cosine attention at T = 0.2, slot dropout 0.5, keys from
N(0, 0.05^2), one inner step with a learned scalar step size from 0.05, the cosine head
(``image_methods.IMAGE_CONFIG``), iFiLM dictionaries of 10 entries after every BatchNorm (``film.py``; they also
modulate the projection shortcuts: the README lists where our network differs from theirs), AdamW at
1e-3 (``ClassificationConfig``), gradients clipped to +-10 (``config.GRAD_CLIP``). Command-line values given with
the preset override it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .validation import ConfigError, check_option

PRESETS = ("paper",)


class Budget(NamedTuple):
    """Training length in AdamW steps, and the step from which the learning rate is a tenth (``main.py``, the
    ``decay_steps`` of the AdamW branch of ``train``: the first is the drop, the second ends training)."""

    iterations: int
    drop_at: int


# CIFAR-10 and CIFAR-100: [120000, 160000]. MNIST and SVHN only appear in their code as the combined set
# "mnist+svhn" (and MNIST-M), whose schedule is [40000, 60000]; we take it for each of them.
PAPER_BUDGETS = {"cifar10": Budget(160_000, 120_000), "cifar100": Budget(160_000, 120_000),
                 "mnist": Budget(60_000, 40_000), "svhn": Budget(60_000, 40_000)}
PAPER_BATCH = 128  # --meta_batch_size of every command in their README
PAPER_NEIGHBOURS_PER_CLASS = 100  # --dict_size=10000 for CIFAR-100 in their README
# Their TensorFlow AdamW (tf.contrib.opt.AdamWOptimizer) subtracts weight_decay * w per step, not multiplied by the
# learning rate, and they divide weight_decay by 10 when the learning rate drops (main.py, weight_decay 7.5e-5).
# torch's AdamW subtracts lr * weight_decay * w, which drops with the learning rate by itself: the same decay is
# weight_decay = 7.5e-5 / 1e-3 = 0.075.
WEIGHT_DECAY = 7.5e-5 / 1e-3


def check_preset(name: str | None, dataset: str) -> None:
    """Refuse an unknown preset, or one with no values for ``dataset``, before any work."""
    if name is None:
        return
    check_option("--preset", name, PRESETS)
    if dataset not in PAPER_BUDGETS:
        raise ConfigError(f"--preset paper has no settings for {dataset!r}: the authors' code trains "
                          f"{', '.join(PAPER_BUDGETS)} only")


def paper_settings(dataset: str, n_classes: int, n_train: int) -> dict:
    """The classify settings of the authors' protocol for ``dataset`` with ``n_train`` training images: their
    budget in steps becomes epochs of that many images, their milestone the epoch share of the drop."""
    check_preset("paper", dataset)
    budget = PAPER_BUDGETS[dataset]
    epochs = math.ceil(budget.iterations * PAPER_BATCH / n_train)
    return {"epochs": epochs, "lr_drop_at": budget.drop_at / budget.iterations, "batch_size": PAPER_BATCH,
            "weight_decay": WEIGHT_DECAY, "dictionary_size": PAPER_NEIGHBOURS_PER_CLASS * n_classes, "augment": "paper"}
