"""Run folders of ``classify``: their layout, the network each holds, and what each records.

One method's run folder::

    config.json        the run's configuration, written before training
    split.json         which images of the data set's train split it trained and validated on (indices), and the
                       per-channel mean and std its inputs were normalised with
    best.json + best.<token>.safetensors   checkpoint ``best``: the best-on-validation weights and ``model_args``
    last.json + last.<token>.safetensors   checkpoint ``last``: the whole training state after the latest epoch
    metrics.json       test accuracy, history and configuration, written at the end

With ``--method all`` the parent folder holds one such folder per method, plus ``config.json``,
``comparison.json`` and ``comparison.md``. ``classify`` writes run folders; ``analyze`` and ``export`` read them
through this module alone, so they see exactly what the run trained on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from torch import nn

from . import checkpoint
from .backbones import create_backbone
from .callbacks import BestEpoch, Callback, higher_accuracy_then_lower_loss
from .config import MNConfig
from .film import film_norm_layer
from .heads import CosineHead
from .io import write_json
from .model import MetaNeighborhoods

CONFIG, SPLIT, METRICS = "config.json", "split.json", "metrics.json"
LAST, BEST = "last", "best"  # checkpoint stems


class Method(NamedTuple):
    dictionary: bool  # induced neighbours + per-input adaptation of the head
    ifilm: bool  # every BatchNorm of the backbone followed by iFiLM


METHODS = {
    "vanilla": Method(dictionary=False, ifilm=False),
    "vanilla_ifilm": Method(dictionary=False, ifilm=True),
    "mn": Method(dictionary=True, ifilm=False),
    "mn_ifilm": Method(dictionary=True, ifilm=True),
}
# The authors' image settings: cosine attention at T = 0.2, the last layer (the cosine head) adapted, keys from
# N(0, 0.05^2), half the slots hidden from each training example.
IMAGE_CONFIG = MNConfig(task="classification", similarity="cosine", temperature=0.2, adapt="last", key_std=0.05,
                        slot_dropout=0.5)
IFILM_WHERE = "all"


def build_model(method: str, backbone: str, in_channels: int, num_classes: int,
                dictionary_size: int = 100) -> MetaNeighborhoods:
    """Backbone + cosine head (+ dictionary, + iFiLM) for one of ``METHODS``; vanilla methods ignore the size."""
    spec = METHODS[method]
    extractor = create_backbone(backbone, in_channels, film_norm_layer(IFILM_WHERE) if spec.ifilm else None)
    head = CosineHead(extractor.out_features, num_classes)
    config = IMAGE_CONFIG.replace(dictionary_size=dictionary_size if spec.dictionary else 0)
    return MetaNeighborhoods(head, config, extractor=extractor)


# ---------------------------------------------------------------------------------------------------
# Checkpoint ``best``: weights plus the ``model_args`` that rebuild them (``last`` is ``training.TrainingState``'s)


def save_checkpoint(stem: Path, model: nn.Module, **info) -> None:
    """Weights (safetensors) plus plain ``info`` (JSON), atomically: see ``checkpoint.save``."""
    checkpoint.save(stem, checkpoint.with_prefix("model.", model.state_dict()), info)


def load_checkpoint(stem: Path, model: nn.Module | None = None) -> tuple[nn.Module, dict]:
    """Weights saved by ``save_checkpoint`` loaded into ``model`` (no code is executed), and their ``info``.

    Without ``model``, the network is rebuilt from the ``model_args`` the checkpoint records.
    """
    tensors, info = checkpoint.load(stem)
    model = build_model(**info["model_args"]) if model is None else model
    checkpoint.load_module(model, checkpoint.take_prefix("model.", tensors), f"{stem}.json")
    return model, info


def load_best_model(run_dir) -> tuple[MetaNeighborhoods, dict]:
    """The best-on-validation network of a classify run folder, rebuilt from its checkpoint, and its info."""
    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    stem = Path(run_dir) / BEST
    if not checkpoint.exists(stem):
        raise FileNotFoundError(f"{stem}.json is missing: {run_dir} is not a classify run folder, or the run has "
                                "not finished an epoch yet")
    model, info = load_checkpoint(stem)
    return model.eval(), info


class BestCheckpoint(Callback):
    """Keeps the weights of the best validation accuracy so far on disk (ties to the lower validation loss, see
    ``callbacks.higher_accuracy_then_lower_loss``); its state travels in checkpoint ``last``."""

    def __init__(self, stem: Path, model_args: dict):
        self.stem, self.model_args = stem, model_args
        self.tracker = BestEpoch(higher_accuracy_then_lower_loss, {"accuracy": -1.0, "loss": float("inf")})

    def update(self, model: nn.Module, accuracy: float, loss: float, epoch: int) -> bool:
        if not self.tracker.update({"accuracy": accuracy, "loss": loss}, epoch):
            return False
        save_checkpoint(self.stem, model, model_args=self.model_args, epoch=epoch, validation_accuracy=accuracy,
                        validation_loss=loss)
        return True

    accuracy = property(lambda self: self.tracker.best["accuracy"])
    loss = property(lambda self: self.tracker.best["loss"])
    epoch = property(lambda self: self.tracker.epoch)

    def state_dict(self) -> dict:
        return self.tracker.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.tracker.load_state_dict(state)


# ---------------------------------------------------------------------------------------------------
# What a run records besides its checkpoints


def read_config(run_dir: Path) -> dict:
    """The configuration of one method's run folder (from ``metrics.json`` once finished, else ``config.json``)."""
    for name in (METRICS, CONFIG):
        path = Path(run_dir) / name
        if path.is_file():
            config = json.loads(path.read_text())
            return config.get("config", config) if name == METRICS else config
    raise FileNotFoundError(f"{run_dir} holds neither {METRICS} nor {CONFIG}: not a classify run folder "
                            "(with --method all, pass one method's subfolder, e.g. RUN/mn)")


@dataclass(frozen=True, eq=False)
class Split:
    """The images a run trained and validated on, as indices into its data set's train split, and the
    per-channel mean and std (of the whole train split, in [0, 1]) its inputs were normalised with."""

    train: np.ndarray
    validation: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]


def write_split(run_dir: Path, split: Split) -> None:
    write_json(Path(run_dir) / SPLIT, {"train": split.train.tolist(), "validation": split.validation.tolist(),
                                       "mean": list(split.mean), "std": list(split.std)})


def read_split(run_dir: Path, n_images: int) -> Split:
    """The run's ``split.json``, checked against a train split of ``n_images`` images."""
    path = Path(run_dir) / SPLIT
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the run was written by an older version of meta-neighborhoods, "
                                "which did not record its split; train it again")
    saved = json.loads(path.read_text())
    indices = {name: np.asarray(saved[name], dtype=np.int64) for name in ("train", "validation")}
    for name, index in indices.items():
        if index.ndim != 1 or len(index) == 0 or index.min() < 0 or index.max() >= n_images:
            raise ValueError(f"{path}: the {name} indices do not fit a train split of {n_images} images; is this the "
                             "data set the run was trained on?")
    return Split(indices["train"], indices["validation"], tuple(saved["mean"]), tuple(saved["std"]))
