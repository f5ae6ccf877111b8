"""The methods of the image table (Table 1): vanilla, MAXL, iFiLM and Meta-Neighborhoods on a backbone with the cosine
head, the network each builds (``build_model``), and checkpoint ``best``, which records the arguments that rebuild it.

A checkpoint is untrusted input: ``load_checkpoint`` checks what it records against the names we know and the shapes
of the tensors it holds before anything is built. Where a run keeps its checkpoints is ``runs.py``'s concern.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from . import checkpoint
from .backbones import available_backbones, create_backbone
from .callbacks import BestEpoch, Callback, higher_accuracy_then_lower_loss
from .config import ClassificationConfig, MNConfig
from .datasets.batches import ImageBatches
from .datasets.images import ImageSplit
from .film import film_norm_layer
from .heads import CosineHead
from .maxl import MetaAuxiliaryLearning
from .model import MetaNeighborhoods
from .validation import ConfigError


class Method(NamedTuple):
    dictionary: bool  # induced neighbours + per-input adaptation of the head
    ifilm: bool  # every BatchNorm of the backbone followed by iFiLM
    auxiliary: bool = False  # trained with meta-learned auxiliary labels (MAXL, ``maxl.py``)

    def unused(self) -> dict[str, str]:
        """The settings of a classify run that do not change this method, and what each is."""
        return {**({} if self.auxiliary else {"psi": "MAXL's auxiliary classes per class"}),
                **({} if self.dictionary else {"dictionary_size": "induced neighbours", "key_init": "their keys' start"})}


METHODS = {  # in the order of Table 1's columns
    "vanilla": Method(dictionary=False, ifilm=False),
    "maxl": Method(dictionary=False, ifilm=False, auxiliary=True),
    "vanilla_ifilm": Method(dictionary=False, ifilm=True),
    "mn": Method(dictionary=True, ifilm=False),
    "mn_ifilm": Method(dictionary=True, ifilm=True),
}
METHOD_NAMES = (*METHODS, "all")  # what --method takes: one method, or all of them


def unused_settings(method: str) -> dict[str, str]:
    """The settings of a classify run that ``method`` leaves at their defaults (``Method.unused``; none for all, whose
    methods each leave their own)."""
    return {} if method == "all" else METHODS[method].unused()


def check_settings(method: str, given) -> None:
    """A setting ``given`` for a method it does not change is refused, naming the methods it applies to: a record
    of a run of another method gives some (such a run records them at their defaults)."""
    for name, what in unused_settings(method).items():
        if name in given:
            users = [other for other, spec in METHODS.items() if name not in spec.unused()]
            raise ConfigError(f"--{name.replace('_', '-')} ({name}, {what}) applies to --method {', '.join(users)} "
                              f"or all, not {method!r}", name)

# The authors' image settings: cosine attention at T = 0.2, the last layer (the cosine head) adapted, keys from
# N(0, 0.05^2), half the slots hidden from each training example.
IMAGE_CONFIG = MNConfig(task="classification", similarity="cosine", temperature=0.2, adapt="last", key_std=0.05,
                        slot_dropout=0.5)
IFILM_WHERE = "all"


def build_model(method: str, backbone: str, in_channels: int, num_classes: int, dictionary_size: int = 100,
                psi: int = ClassificationConfig.psi) -> MetaNeighborhoods:
    """Backbone + cosine head (+ dictionary, + iFiLM, + MAXL's auxiliary head and label generator) for one of
    ``METHODS``; methods without a dictionary ignore its size, those without auxiliary labels psi."""
    spec = METHODS[method]
    extractor = create_backbone(backbone, in_channels, film_norm_layer(IFILM_WHERE) if spec.ifilm else None)
    if spec.auxiliary:
        return MetaAuxiliaryLearning(extractor, create_backbone(backbone, in_channels), num_classes, psi)
    head = CosineHead(extractor.out_features, num_classes)
    config = IMAGE_CONFIG.replace(dictionary_size=dictionary_size if spec.dictionary else 0)
    return MetaNeighborhoods(head, config, extractor=extractor)


def build_model_args(method: str, backbone: str, in_channels: int, num_classes: int, dictionary_size: int,
                     psi: int) -> dict:
    """``build_model``'s arguments as checkpoint ``best`` records them, to rebuild its network (``_model_args``
    checks them on load): a method without a dictionary records size 0, psi only where MAXL uses it."""
    spec = METHODS[method]
    return {"method": method, "backbone": backbone, "in_channels": in_channels, "num_classes": num_classes,
            "dictionary_size": dictionary_size if spec.dictionary else 0, **({"psi": psi} if spec.auxiliary else {})}


# ---------------------------------------------------------------------------------------------------
# Checkpoint ``best``: weights plus the ``model_args`` that rebuild them (``last`` is ``training_state.TrainingState``'s)


def save_checkpoint(stem: Path, model: nn.Module, **info) -> None:
    """Weights (safetensors) plus plain ``info`` (JSON), atomically: see ``checkpoint.save``."""
    checkpoint.save(stem, checkpoint.network_tensors(model), info)


def load_checkpoint(stem: Path, model: nn.Module | None = None) -> tuple[nn.Module, dict]:
    """Weights saved by ``save_checkpoint`` loaded into ``model`` (no code is executed), and their ``info``.

    Without ``model``, the network is rebuilt from the ``model_args`` the checkpoint records.
    """
    tensors, info = checkpoint.load(stem)
    if model is None:
        model = build_model(**_model_args(info.get("model_args"), tensors, f"{stem}.json"))
    checkpoint.load_network(model, tensors, f"{stem}.json")
    return model, info


def _model_args(args, tensors: dict, source: str) -> dict:
    """``build_model``'s arguments as a checkpoint records them, checked against the names we know and against
    the tensor file's shapes before anything is built (a crafted size must not allocate terabytes)."""
    names = ("method", "backbone", "in_channels", "num_classes", "dictionary_size")
    method = METHODS.get(args.get("method")) if isinstance(args, dict) and type(args.get("method")) is str else None
    names += ("psi",) if method is not None and method.auxiliary else ()  # MAXL's auxiliary classes per class
    if not (method is not None and set(args) == set(names) and all(type(args[n]) is int for n in names[2:])
            and type(args["backbone"]) is str and args["backbone"] in available_backbones()
            and args.get("psi", 2) >= 2):
        raise checkpoint.CheckpointError(f"{source}: model_args should name a method, a backbone and "
                                         f"{len(names) - 2} integers ({', '.join(names)}), got {args!r}")
    network = checkpoint.network_of(tensors)
    keys, prototypes, auxiliary = (network.get(name) for name in ("dictionary.keys", "head.weight", "auxiliary.weight"))
    size = 0 if keys is None else keys.shape[0] if keys.dim() == 2 else tuple(keys.shape)  # not (S, d): refused
    expected = args["dictionary_size"] if method.dictionary else 0  # vanilla ignores the size
    shape = (None if auxiliary is None else tuple(auxiliary.shape[1:]),
             (args["num_classes"] * args["psi"],) if method.auxiliary else None)
    if (size != expected or prototypes is None or prototypes.shape[1:] != (args["num_classes"],)
            or shape[0] != shape[1] or not 1 <= args["in_channels"] <= 64):
        raise checkpoint.CheckpointError(f"{source}: model_args {args} do not match the tensors it holds "
                                         f"(dictionary of {size}, head "
                                         f"{None if prototypes is None else tuple(prototypes.shape)}, auxiliary head "
                                         f"{None if auxiliary is None else tuple(auxiliary.shape)})")
    return args


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


@torch.no_grad()
def init_keys_from_features(model: MetaNeighborhoods, split: ImageSplit, mean, std, seed: int,
                            device: torch.device, rows: np.ndarray | None = None) -> None:
    """Keys at the initial features of S distinct random images among the ``rows`` of ``split`` that a run trains
    on (default: all; normalised by ``mean`` and ``std``), values at their labels; only those S are copied.

    Random Gaussian keys are nearly orthogonal to every feature in a wide feature space, so attention
    starts uniform, adaptation moves nothing and the keys get almost no gradient; keys that start on
    the data are attended to selectively from the first step.
    """
    size, rows = model.dictionary.size, np.arange(len(split)) if rows is None else np.asarray(rows)
    if len(rows) < size:
        raise ValueError(f"{size} keys cannot start at {len(rows)} distinct training images")
    pick = rows[np.random.default_rng(seed).choice(len(rows), size=size, replace=False)]
    batch = ImageBatches(ImageSplit(split.images[pick], split.labels[pick]), mean, std, batch_size=size)
    images, labels = next(iter(batch))
    model.train()  # batch statistics: the running ones are still at their initial values
    model.dictionary.init_from_samples(model.features(images.to(device)), labels.to(device))
