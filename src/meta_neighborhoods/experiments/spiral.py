"""Sec. 4.1 / Fig. 3: a linear classifier adapted to 100 learned neighbours separates two spirals."""

from __future__ import annotations

import time
from dataclasses import asdict, replace

import numpy as np
import torch

from ..callbacks import Callback, Progress
from ..config import SpiralConfig
from ..datasets.batches import TensorBatches
from ..datasets.spiral import make_spirals
from ..heads import LinearHead
from ..io import claimed, write_json
from ..model import MetaNeighborhoods
from ..plots import spiral_animation, spiral_figure
from ..run_files import METRICS, SPIRAL_GIF, SPIRAL_PNG
from ..run_record import RUN, write_run_record
from ..training import fit, resolve_device, torch_threads
from ..training_state import OptimizerSpec

RECORDS = (METRICS, RUN)  # a folder holding them holds a run
OUTPUTS = (*RECORDS, SPIRAL_PNG, SPIRAL_GIF)  # what a run writes; the figures alone are a killed run's leftovers


def _seeds(config: SpiralConfig) -> dict:
    """Every seed the run draws from, derived from ``config.seed``: what reproduces it."""
    return {"seed": config.seed, "train_spirals": 2 * config.seed, "test_spirals": 2 * config.seed + 1,
            "torch": config.seed, "batches": config.seed}


def _data(config: SpiralConfig, device):
    """Train and test spirals from separate seeds, standardised with the training statistics; and the record of
    that standardisation (what a model trained here expects of its inputs)."""
    seeds = _seeds(config)
    train_x, train_y = make_spirals(config.n_per_class, config.noise, seed=seeds["train_spirals"])
    test_x, test_y = make_spirals(config.n_per_class, config.noise, seed=seeds["test_spirals"])
    mean, std = train_x.mean(0), train_x.std(0)

    def tensors(x, y):
        return torch.tensor((x - mean) / std, dtype=torch.float32, device=device), torch.tensor(y, device=device)

    normalisation = {"features": 2, "mean": mean.tolist(), "std": std.tolist(),
                     "transform": "(x - mean) / std per feature, with the training spirals' mean and std"}
    return tensors(train_x, train_y), tensors(test_x, test_y), normalisation


@torch.no_grad()
def _predict(model, x):
    model.eval()
    return model(x).argmax(1)


class _Snapshots(Callback):
    """The keys and the test predictions at ``epochs`` (epochs done), for the figure and the animation."""

    def __init__(self, model, test, epochs: set[int]):
        self.model, self.test, self.epochs = model, test, epochs
        self.trajectory, self.frames = [], []

    def on_epoch_end(self, epoch: int, loss: float | None = None) -> None:
        if epoch + 1 in self.epochs:
            self.trajectory.append(self.model.dictionary.keys.detach().cpu().numpy().copy())
            predictions = _predict(self.model, self.test[0])
            accuracy = (predictions == self.test[1]).float().mean().item()
            self.frames.append((epoch + 1, accuracy, predictions.cpu().numpy()))


def _train(model, train, test, config, device, progress, callbacks=None) -> tuple[float, np.ndarray]:
    """Fit ``model``; its test accuracy and test predictions."""
    batches = TensorBatches(*train, batch_size=config.batch_size, seed=config.seed)
    desc = "vanilla" if model.vanilla else "meta-neighborhoods"
    fit(model, batches, epochs=config.epochs, optimizer=OptimizerSpec(config.learning_rate), device=device,
        callbacks={**(callbacks or {}), "progress": Progress(desc, progress)})
    predictions = _predict(model, test[0])
    return (predictions == test[1]).float().mean().item(), predictions.cpu().numpy()


def run_spiral(out, config: SpiralConfig | None = None, device: str = "auto", progress: bool = True,
               overwrite: bool = False) -> dict:
    """Train vanilla and Meta-Neighborhoods (same linear head) and write metrics, figure and animation, and the
    run's record (``run.json``: provenance, seeds, input normalisation); a folder holding them is refused unless
    ``overwrite``."""
    config, option, device, started = config or SpiralConfig(), device, resolve_device(device), time.time()
    if config.threads is None:  # recorded, so that a rerun from the record sums as this run does
        config = replace(config, threads=torch.get_num_threads())
    with torch_threads(config.threads), claimed(out, RECORDS, overwrite, "spiral", records=RECORDS,
                                                 replaces=OUTPUTS) as out:
        train, test, normalisation = _data(config, device)
        accuracy = {}

        torch.manual_seed(config.seed)
        vanilla = MetaNeighborhoods(LinearHead(2, 2), config.method.replace(dictionary_size=0)).to(device)
        accuracy["vanilla"], vanilla_predictions = _train(vanilla, train, test, config, device, progress)

        torch.manual_seed(config.seed)
        model = MetaNeighborhoods(LinearHead(2, 2), config.method).to(device)
        at = set(np.linspace(0, config.epochs, config.snapshots).round().astype(int).tolist())
        snapshots = _Snapshots(model, test, at)
        snapshots.on_epoch_end(-1)  # the initial state
        accuracy["meta_neighborhoods"], _ = _train(model, train, test, config, device, progress,
                                                   {"snapshots": snapshots})
        trajectory, frames = snapshots.trajectory, snapshots.frames

        points = test[0].cpu().numpy()
        labels = model.dictionary.values().argmax(1).cpu().numpy()
        trajectory = np.stack(trajectory)
        spiral_figure(out / SPIRAL_PNG, points, frames, trajectory, labels,
                      vanilla=(accuracy["vanilla"], vanilla_predictions))
        files = [SPIRAL_PNG]
        if config.animation:
            spiral_animation(out / SPIRAL_GIF, points, frames, trajectory, labels)
            files.append(SPIRAL_GIF)
        metrics = {
            "test_accuracy": accuracy,
            "step_size": model.adaptation.step_size()["layers.0.weight"].item(),
            "seconds": round(time.time() - started, 2),
            "device": str(device),
            "files": [*files, RUN],
            "config": {**{k: v for k, v in asdict(config).items() if k != "method"}, "device": option,
                       **config.method.to_dict()},
        }
        write_run_record(out, {"seeds": _seeds(config), "input": normalisation})
        write_json(out / METRICS, metrics)
    return metrics
