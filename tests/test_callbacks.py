"""The training loop's callbacks: one best-epoch mechanism with its criterion as a parameter, early stopping,
the order the loop calls them in, and state that travels in the ``last`` checkpoint."""

import math

import torch

from meta_neighborhoods.callbacks import (
    BestEpoch, Callback, EarlyStopping, History, higher_accuracy_then_lower_loss, lower_loss,
)
from meta_neighborhoods.datasets.batches import TensorBatches
from meta_neighborhoods.heads import MLPHead
from meta_neighborhoods.model import MetaNeighborhoods
from meta_neighborhoods.training import fit


def test_lower_loss_needs_more_than_the_tolerance():
    better = lower_loss(0.1)
    assert better({"loss": 0.85}, {"loss": 1.0}) and not better({"loss": 0.95}, {"loss": 1.0})


def test_accuracy_comes_first_then_the_loss_and_a_tie_keeps_the_earlier_epoch():
    kept = []
    best = BestEpoch(higher_accuracy_then_lower_loss, {"accuracy": -1.0, "loss": math.inf},
                     keep=lambda epoch, metrics: kept.append(epoch))
    for epoch, (accuracy, loss) in enumerate([(0.5, 0.8), (0.4, 0.1), (0.5, 0.8), (0.5, 0.6), (0.7, 0.9)], 1):
        best.update({"accuracy": accuracy, "loss": loss}, epoch)
    assert kept == [1, 4, 5] and best.epoch == 5 and best.best == {"accuracy": 0.7, "loss": 0.9}


def test_best_epoch_state_round_trips():
    best = BestEpoch(lower_loss(), {"loss": math.inf})
    best.update({"loss": 0.3}, 4)
    again = BestEpoch(lower_loss(), {"loss": math.inf})
    again.load_state_dict(best.state_dict())
    assert (again.epoch, again.best) == (4, {"loss": 0.3})


class Recorder(Callback):
    def __init__(self, log):
        self.log = log

    def on_train_begin(self, start_epoch, epochs):
        self.log.append(("begin", start_epoch, epochs))

    def on_epoch_end(self, epoch, loss):
        self.log.append(("epoch", epoch))

    def on_train_end(self):
        self.log.append(("end",))


def _setup():
    torch.manual_seed(0)
    x, y = torch.randn(32, 3), torch.randn(32, 1)
    return MetaNeighborhoods(MLPHead(3, (4,), 1), dictionary_size=4), TensorBatches(x, y, batch_size=8)


def test_early_stopping_stops_after_patience_epochs_without_improvement():
    model, batches = _setup()
    losses = iter([1.0, 0.5, 0.6, 0.7, 0.4, 0.9, 0.9, 0.9, 0.9])
    best, log = BestEpoch(lower_loss(), {"loss": math.inf}), []
    history = fit(model, batches, epochs=9, callbacks={
        "stop": EarlyStopping(best, lambda loss: {"loss": next(losses)}, patience=3), "log": Recorder(log)})
    assert best.epoch == 5 and len(history) == 8  # best at 2, then at 5; stopped after three epochs without
    assert log[0] == ("begin", 0, 9) and log[-1] == ("end",) and [e for e in log if e[0] == "epoch"][-1] == (
        "epoch", 7)  # every callback ran in the stopping epoch


def test_history_travels_in_the_last_checkpoint(tmp_path):
    model, batches = _setup()

    class Logger(Callback):
        def __init__(self, history):
            self.history = history

        def on_epoch_end(self, epoch, loss):
            self.history.append({"epoch": epoch + 1, "loss": loss})

    history = History()
    fit(model, batches, epochs=2, callbacks={"log": Logger(history), "history": history}, checkpoint=tmp_path / "last")
    resumed_model, resumed_batches = _setup()
    resumed = History()
    fit(resumed_model, resumed_batches, epochs=3, callbacks={"log": Logger(resumed), "history": resumed},
        checkpoint=tmp_path / "last", resume=True)
    assert [r["epoch"] for r in resumed] == [1, 2, 3] and resumed[:2] == list(history)
