"""Table 1: image classification by vanilla, vanilla+iFiLM, Meta-Neighborhoods and MN+iFiLM on one backbone.

Protocol (the same for every method, so only the method differs):

* a seeded validation split is held out of the training split (10 %, at most 5000 images); the test split is
  touched once, at the end;
* ``fit`` with AdamW (weight decay as ``training.parameter_groups``), gradients clipped to +-10 by value, the
  learning rate x0.1 after 2/3 of the epochs; augmentation (the data set's own) on the training batches only;
* after every epoch the validation accuracy and loss are measured and the best weights so far (highest accuracy,
  ties to the lower loss) are saved as checkpoint ``best`` (``best.json`` + safetensors, see ``checkpoint.py``);
  the test accuracy is that of the best checkpoint, reloaded from disk;
* after every epoch the whole training state is saved as checkpoint ``last``: ``resume_classification`` (CLI
  ``--resume DIR``) continues a killed run and ends exactly where the uninterrupted run would have;
* under ``torchrun`` every process trains on its slice of each global batch of ``batch_size`` images
  (DistributedDataParallel); rank 0 alone validates, tests, logs and writes. BatchNorm statistics are those of
  each process's slice (not synchronised), so a multi-process run equals a one-process run exactly only for
  backbones without BatchNorm; slot-dropout masks and augmentation are drawn per process.

Every method uses the cosine classifier (tau learned, init 10) on the backbone's features. The Meta-Neighborhoods
settings follow the authors' image code (DESIGN.md), see ``MN_SETTINGS``. The dictionary size is not given in the
paper's main text; our default is ``NEIGHBOURS_PER_CLASS`` (10) slots per class: 100 for 10-class sets.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .. import __version__, checkpoint, distributed
from ..backbones import available_backbones, create_backbone
from ..datasets.images import IMAGE_DATASETS, ImageBatches, ImageDataset, ImageSplit, load_image_dataset
from ..dictionary import KEY_INITS
from ..film import film_norm_layer
from ..heads import CosineHead
from ..model import MetaNeighborhoods
from ..similarity import check_option
from ..results import markdown_table, prepare_out_dir, write_json
from ..training import fit, resolve_device

LAST, BEST = "last", "best"  # checkpoint stems inside a run folder
RELOCATABLE = ("device", "data_dir", "cache_dir")  # settings a resumed run may change: they do not alter results


class Method(NamedTuple):
    dictionary: bool  # induced neighbours + per-input adaptation of the head
    ifilm: bool  # every BatchNorm of the backbone followed by iFiLM


METHODS = {
    "vanilla": Method(dictionary=False, ifilm=False),
    "vanilla_ifilm": Method(dictionary=False, ifilm=True),
    "mn": Method(dictionary=True, ifilm=False),
    "mn_ifilm": Method(dictionary=True, ifilm=True),
}
MN_SETTINGS = {
    "similarity": "cosine", "temperature": 0.2, "learn_temperature": False, "inner_steps": 1,
    "step_size": "scalar", "step_size_init": 0.05, "adapt": "last", "first_order": False,
    "values": "learned", "key_std": 0.05, "slot_dropout": 0.5,
}
IFILM_WHERE = "all"
NEIGHBOURS_PER_CLASS = 10
VALIDATION_FRACTION, VALIDATION_MAX = 0.1, 5000
GRAD_CLIP = 10.0
LR_DROP_AT = 2 / 3  # fraction of the epochs after which the learning rate drops tenfold


@dataclass(frozen=True)
class ClassificationConfig:
    """The arguments of ``run_classification``: with them, a run can be repeated exactly."""

    dataset: str
    backbone: str
    method: str
    epochs: int
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 7.5e-5
    train_subset: int | None = None
    dictionary_size: int | None = None  # None: NEIGHBOURS_PER_CLASS x classes
    key_init: str = "gaussian"  # the authors' N(0, 0.05^2); or "samples": features of training images
    seed: int = 0
    device: str = "auto"
    data_dir: str | None = None
    cache_dir: str | None = None


class Splits(NamedTuple):
    train: ImageSplit
    validation: ImageSplit
    test: ImageSplit


# ---------------------------------------------------------------------------------------------------
# Model and checkpoint


def build_model(method: str, backbone: str, in_channels: int, num_classes: int,
                dictionary_size: int = 100) -> MetaNeighborhoods:
    """Backbone + cosine head (+ dictionary, + iFiLM) for one of ``METHODS``; vanilla methods ignore the size."""
    spec = METHODS[method]
    extractor = create_backbone(backbone, in_channels, film_norm_layer(IFILM_WHERE) if spec.ifilm else None)
    head = CosineHead(extractor.out_features, num_classes)
    return MetaNeighborhoods(head, task="classification", dictionary_size=dictionary_size if spec.dictionary else 0,
                             extractor=extractor, **MN_SETTINGS)


@torch.no_grad()
def init_keys_from_features(model: MetaNeighborhoods, split: ImageSplit, dataset: ImageDataset, seed: int,
                            device: torch.device) -> None:
    """Keys at the initial features of S random training images, values at their labels.

    Random Gaussian keys are nearly orthogonal to every feature in a wide feature space, so attention
    starts uniform, adaptation moves nothing and the keys get almost no gradient; keys that start on
    the data are attended to selectively from the first step.
    """
    size = model.dictionary.size
    pick = np.random.default_rng(seed).choice(len(split), size=size, replace=len(split) < size)
    batch = ImageBatches(ImageSplit(split.images[pick], split.labels[pick]), dataset.mean, dataset.std, batch_size=size)
    images, labels = next(iter(batch))
    model.train()  # batch statistics: the running ones are still at their initial values
    model.dictionary.init_from_samples(model.features(images.to(device)), labels.to(device))


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


class BestCheckpoint:
    """Keeps the weights of the best validation accuracy so far on disk.

    Ties go to the lower validation loss (then to the earlier epoch): a small validation split saturates, on
    digits all 144 images are right from about epoch 5 on, and "the first epoch at the maximum" would then
    pick an early, barely trained network over the later ones, which are as accurate and more confident.
    """

    def __init__(self, stem: Path, model_args: dict):
        self.stem, self.model_args = stem, model_args
        self.accuracy, self.loss, self.epoch = -1.0, float("inf"), 0

    def update(self, model: nn.Module, accuracy: float, loss: float, epoch: int) -> bool:
        if (accuracy, -loss) <= (self.accuracy, -self.loss):
            return False
        self.accuracy, self.loss, self.epoch = accuracy, loss, epoch
        save_checkpoint(self.stem, model, model_args=self.model_args, epoch=epoch, validation_accuracy=accuracy,
                        validation_loss=loss)
        return True

    def state_dict(self) -> dict:
        return {"accuracy": self.accuracy, "loss": self.loss, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.accuracy, self.loss, self.epoch = state["accuracy"], state["loss"], state["epoch"]


class History(list):
    """Per-epoch records that travel in the ``last`` checkpoint, so a resumed run reports every epoch."""

    def state_dict(self) -> dict:
        return {"epochs": list(self)}

    def load_state_dict(self, state: dict) -> None:
        self[:] = state["epochs"]


# ---------------------------------------------------------------------------------------------------
# Data and evaluation


def split_validation(train: ImageSplit, seed: int) -> tuple[ImageSplit, ImageSplit]:
    """(train, validation): a seeded random ``VALIDATION_FRACTION`` of the images, at most ``VALIDATION_MAX``."""
    n_validation = min(VALIDATION_MAX, max(1, round(VALIDATION_FRACTION * len(train))))
    if n_validation >= len(train):
        raise ValueError(f"the training split has {len(train)} images, too few to hold out a validation split")
    order = np.random.default_rng(seed).permutation(len(train))

    def part(index: np.ndarray) -> ImageSplit:
        index = np.sort(index)
        return ImageSplit(train.images[index], train.labels[index])

    return part(order[n_validation:]), part(order[:n_validation])


def _batches(split: ImageSplit, dataset: ImageDataset, config: ClassificationConfig, training: bool = False):
    """Normalised batches; shuffling, augmentation and ``train_subset`` apply to training batches only."""
    if not training:
        return ImageBatches(split, dataset.mean, dataset.std, batch_size=config.batch_size)
    return ImageBatches(split, dataset.mean, dataset.std, batch_size=config.batch_size, shuffle=True,
                        seed=config.seed, augment=dataset.augment, subset=config.train_subset,
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


# ---------------------------------------------------------------------------------------------------
# Runs


def _check_names(dataset: str, backbone: str, method: str) -> None:
    """Fail on a misspelt name before minutes of data loading, listing the valid ones."""
    for kind, name, known in (("image data set", dataset, list(IMAGE_DATASETS)),
                              ("backbone", backbone, available_backbones()),
                              ("method", method, [*METHODS, "all"])):
        if name not in known:
            raise ValueError(f"unknown {kind} {name!r}; choose one of {', '.join(known)}")


def _model_args(config: ClassificationConfig, dataset: ImageDataset) -> dict:
    """``build_model``'s arguments for this run: what rebuilds the network of ``best.pt``."""
    return {"method": config.method, "backbone": config.backbone, "in_channels": dataset.train.images.shape[1],
            "num_classes": len(dataset.classes),
            "dictionary_size": config.dictionary_size if METHODS[config.method].dictionary else 0}


def _run_config(config: ClassificationConfig, model_args: dict | None = None) -> dict:
    """The arguments plus every fixed choice of the protocol, as written to config.json."""
    return {
        **asdict(config),
        **({"model": model_args} if model_args is not None else {}),
        "meta_neighborhoods": MN_SETTINGS, "ifilm_where": IFILM_WHERE,
        "optimizer": "AdamW", "grad_clip_value": GRAD_CLIP, "milestones": _milestones(config.epochs),
        "validation_fraction": VALIDATION_FRACTION, "validation_max": VALIDATION_MAX, "version": __version__,
    }


def _milestones(epochs: int) -> list[int]:
    return [round(LR_DROP_AT * epochs)]


def _train_method(config: ClassificationConfig, dataset: ImageDataset, splits: Splits, out: Path,
                  device: torch.device, progress: bool, resume: bool = False) -> dict:
    """One method end to end into ``out``: train (or continue from ``out/last``), keep the best-on-validation
    checkpoint, test it. Only rank 0 writes; other ranks return an empty dict."""
    started = time.perf_counter()
    train = _batches(splits.train, dataset, config, training=True)  # checks batch size and subset before any file
    main = distributed.is_main()
    out = prepare_out_dir(out) if main else Path(out)
    if resume and (out / "metrics.json").is_file():
        return json.loads((out / "metrics.json").read_text())  # finished before the interruption
    if resume and not checkpoint.exists(out / LAST):
        raise checkpoint.CheckpointError(f"nothing to resume in {out}: it holds no {LAST}.json checkpoint")
    model_args = _model_args(config, dataset)
    run_config = _run_config(config, model_args)
    if main and not resume:
        write_json(out / "config.json", run_config)
    torch.manual_seed(config.seed)
    model = build_model(**model_args).to(device)
    if model.dictionary is not None and config.key_init == "samples" and not resume:  # else Gaussian keys
        init_keys_from_features(model, splits.train, dataset, config.seed, device)
    validation = _batches(splits.validation, dataset, config)
    best, history = BestCheckpoint(out / BEST, model_args), History()

    with tqdm(total=config.epochs, desc=config.method, disable=not (progress and main)) as bar:
        def on_epoch_end(epoch: int, loss: float) -> None:
            if not main:
                return
            validation_accuracy, validation_loss = evaluate(model, validation, device)
            best.update(model, validation_accuracy, validation_loss, epoch + 1)
            history.append({"epoch": epoch + 1, "loss": loss, "validation_accuracy": validation_accuracy,
                            "validation_loss": validation_loss})
            bar.n = epoch + 1
            bar.set_postfix(loss=f"{loss:.4f}", val_acc=f"{validation_accuracy:.4f}", best=f"{best.accuracy:.4f}")

        fit(model, train, epochs=config.epochs,
            learning_rate=config.learning_rate, weight_decay=config.weight_decay, grad_clip=GRAD_CLIP,
            milestones=_milestones(config.epochs), device=device, on_epoch_end=on_epoch_end, progress=False,
            checkpoint=out / LAST, resume=resume, stateful={"best": best, "history": history},
            config={key: value for key, value in run_config.items() if key not in RELOCATABLE})
    if not main:
        return {}

    load_checkpoint(out / BEST, model)
    metrics = {
        "test_accuracy": evaluate(model, _batches(splits.test, dataset, config), device)[0],
        "validation_accuracy": best.accuracy, "validation_loss": best.loss, "best_epoch": best.epoch,
        "method": config.method, "backbone": config.backbone, "dataset": config.dataset, "epochs": config.epochs,
        "seconds": round(time.perf_counter() - started, 2), "device": str(device),
        "processes": distributed.world_size(), "resumed": resume,
        "parameters": sum(p.numel() for p in model.parameters()),
        "images": {"train": config.train_subset or len(splits.train), "validation": len(splits.validation),
                   "test": len(splits.test)},
        "history": list(history), "files": [f"{BEST}.json", f"{LAST}.json", "config.json", "metrics.json"],
        "config": run_config,
    }
    write_json(out / "metrics.json", metrics)
    return metrics


def _comparison_markdown(config: ClassificationConfig, results: dict[str, dict]) -> str:
    rows = [[name, f"{m['test_accuracy']:.4f}", f"{m['validation_accuracy']:.4f}", str(m["best_epoch"]),
             f"{m['seconds']:.1f}"] for name, m in results.items()]
    title = (f"# {config.dataset}, {config.backbone}: test accuracy of the best-on-validation checkpoint "
             f"({config.epochs} epochs, seed {config.seed})\n\n")
    return title + markdown_table(["method", "test accuracy", "validation accuracy", "best epoch", "seconds"], rows)


def _compare(config: ClassificationConfig, dataset: ImageDataset, splits: Splits, out: Path,
             device: torch.device, progress: bool, resume: bool = False) -> dict:
    """Every method on the same data into ``out/<method>/``, plus comparison.md and comparison.json.

    Resuming keeps the methods that had finished, continues the one that was interrupted, starts the rest."""
    results = {}
    for name in METHODS:
        continues = resume and ((out / name / "metrics.json").is_file() or checkpoint.exists(out / name / LAST))
        results[name] = _train_method(replace(config, method=name), dataset, splits, out / name, device, progress,
                                      resume=continues)
    if not distributed.is_main():
        return {}
    keys = ("test_accuracy", "validation_accuracy", "best_epoch", "seconds")
    comparison = {"dataset": config.dataset, "backbone": config.backbone,
                  "methods": {name: {k: m[k] for k in keys} for name, m in results.items()},
                  "config": _run_config(config)}
    write_json(out / "comparison.json", comparison)
    (out / "comparison.md").write_text(_comparison_markdown(config, results))
    return comparison


def run_classification(dataset_name: str, backbone: str, method: str, out, epochs: int, batch_size: int = 128,
                       learning_rate: float = 1e-3, weight_decay: float = 7.5e-5, train_subset: int | None = None,
                       data_dir=None, cache_dir=None, device: str = "auto", seed: int = 0, progress: bool = True,
                       dictionary_size: int | None = None, key_init: str = "gaussian") -> dict:
    """Train and test one method (``out/metrics.json``, ``config.json``, checkpoints) and return its metrics.

    ``method="all"`` runs every method of ``METHODS`` into ``out/<method>/`` and returns the comparison
    (also written to ``out/comparison.json`` and ``out/comparison.md``).
    """
    _check_names(dataset_name, backbone, method)
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if dictionary_size is not None and not (isinstance(dictionary_size, int) and dictionary_size >= 1):
        raise ValueError(f"dictionary size must be a positive integer, got {dictionary_size!r}")
    check_option("key initialisation", key_init, KEY_INITS)
    torch_device = resolve_device(device)
    if distributed.is_main():
        out = prepare_out_dir(out)
    dataset = load_image_dataset(dataset_name, data_dir, cache_dir)
    config = ClassificationConfig(
        dataset_name, backbone, method, epochs, batch_size, learning_rate, weight_decay, train_subset,
        dictionary_size or NEIGHBOURS_PER_CLASS * len(dataset.classes), key_init, seed, device,
        None if data_dir is None else str(data_dir), None if cache_dir is None else str(cache_dir),
    )
    return _execute(config, dataset, Path(out), torch_device, progress, resume=False)


def resume_classification(out, device: str | None = None, progress: bool = True, data_dir=None,
                          cache_dir=None) -> dict:
    """Continue the classify run in ``out`` with its saved configuration (``out/config.json``) from its ``last``
    checkpoint; ends with the same weights and metrics as the uninterrupted run. ``device`` and the data paths
    may differ from the original run's (files move; a run may continue on another machine)."""
    out = Path(out)
    if not (out / "config.json").is_file():
        raise checkpoint.CheckpointError(f"nothing to resume in {out}: it holds no config.json of a classify run")
    saved = json.loads((out / "config.json").read_text())
    fields = {name: saved[name] for name in ClassificationConfig.__dataclass_fields__}
    fields.update({k: str(v) for k, v in (("data_dir", data_dir), ("cache_dir", cache_dir)) if v is not None})
    config = ClassificationConfig(**{**fields, "device": device or fields["device"]})
    dataset = load_image_dataset(config.dataset, config.data_dir, config.cache_dir)
    return _execute(config, dataset, out, resolve_device(config.device), progress, resume=True)


def _execute(config: ClassificationConfig, dataset: ImageDataset, out: Path, device: torch.device, progress: bool,
             resume: bool) -> dict:
    """Run (or resume) ``config`` in this process, inside torchrun's process group when launched by it."""
    with distributed.process_group(device) as device:
        splits = Splits(*split_validation(dataset.train, config.seed), dataset.test)
        if config.method != "all":
            return _train_method(config, dataset, splits, out, device, progress, resume)
        _batches(splits.train, dataset, config, training=True)  # checks batch size and subset before any file
        if distributed.is_main() and not resume:
            write_json(out / "config.json", _run_config(config))
        return _compare(config, dataset, splits, out, device, progress, resume)
