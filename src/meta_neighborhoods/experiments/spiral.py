"""Sec. 4.1 / Fig. 3: a linear classifier adapted to 100 learned neighbours separates two spirals."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..datasets.spiral import make_spirals
from ..heads import LinearHead
from ..model import MetaNeighborhoods
from ..plots import spiral_animation, spiral_figure
from ..results import prepare_out_dir, write_json
from ..training import TensorBatches, fit, resolve_device


@dataclass
class SpiralConfig:
    seed: int = 0
    epochs: int = 300
    batch_size: int = 256
    learning_rate: float = 0.01
    dictionary_size: int = 100  # the paper's 100 neighbours
    temperature: float = 0.1  # the paper's T
    similarity: str = "euclidean"
    step_size_init: float = 0.5
    n_per_class: int = 800
    noise: float = 0.5
    snapshots: int = 30  # moments recorded for the figure and the animation
    animation: bool = True


def _data(config: SpiralConfig, device):
    """Train and test spirals from separate seeds, standardised with the training statistics."""
    train_x, train_y = make_spirals(config.n_per_class, config.noise, seed=2 * config.seed)
    test_x, test_y = make_spirals(config.n_per_class, config.noise, seed=2 * config.seed + 1)
    mean, std = train_x.mean(0), train_x.std(0)

    def tensors(x, y):
        return torch.tensor((x - mean) / std, dtype=torch.float32, device=device), torch.tensor(y, device=device)

    return tensors(train_x, train_y), tensors(test_x, test_y)


@torch.no_grad()
def _predict(model, x):
    model.eval()
    return model(x).argmax(1)


def _train(model, train, test, config, device, progress, record=None):
    batches = TensorBatches(*train, batch_size=config.batch_size, seed=config.seed)
    fit(model, batches, epochs=config.epochs, learning_rate=config.learning_rate, device=device,
        on_epoch_end=record, progress=progress, desc="vanilla" if model.vanilla else "meta-neighborhoods")
    return (_predict(model, test[0]) == test[1]).float().mean().item()


def run_spiral(out, config: SpiralConfig | None = None, device: str = "auto", progress: bool = True) -> dict:
    """Train vanilla and Meta-Neighborhoods (same linear head) and write metrics, figure and animation."""
    config = config or SpiralConfig()
    out, device, started = prepare_out_dir(out), resolve_device(device), time.time()
    train, test = _data(config, device)
    accuracy = {}

    torch.manual_seed(config.seed)
    vanilla = MetaNeighborhoods(LinearHead(2, 2), task="classification", dictionary_size=0).to(device)
    accuracy["vanilla"] = _train(vanilla, train, test, config, device, progress)

    torch.manual_seed(config.seed)
    model = MetaNeighborhoods(
        LinearHead(2, 2), task="classification", dictionary_size=config.dictionary_size,
        similarity=config.similarity, temperature=config.temperature, values="fixed",
        step_size_init=config.step_size_init,
    ).to(device)
    record_at = set(np.linspace(0, config.epochs, config.snapshots).round().astype(int).tolist())
    trajectory, frames = [], []

    def record(epoch, loss=None):
        if epoch + 1 in record_at:
            trajectory.append(model.dictionary.keys.detach().cpu().numpy().copy())
            predictions = _predict(model, test[0])
            accuracy_now = (predictions == test[1]).float().mean().item()
            frames.append((epoch + 1, accuracy_now, predictions.cpu().numpy()))

    record(-1)
    accuracy["meta_neighborhoods"] = _train(model, train, test, config, device, progress, record)

    points = test[0].cpu().numpy()
    labels = model.dictionary.values().argmax(1).cpu().numpy()
    trajectory = np.stack(trajectory)
    spiral_figure(out / "spiral.png", points, frames, trajectory, labels)
    files = ["spiral.png"]
    if config.animation:
        spiral_animation(out / "spiral.gif", points, frames, trajectory, labels)
        files.append("spiral.gif")
    metrics = {
        "test_accuracy": accuracy,
        "step_size": model.adaptation.step_size()["layers.0.weight"].item(),
        "seconds": round(time.time() - started, 2),
        "device": str(device),
        "files": files,
        "config": asdict(config),
    }
    write_json(out / "metrics.json", metrics)
    return metrics
