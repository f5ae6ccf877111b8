"""What differs between front ends of the one training loop (``training.fit``): hooks called by the loop.

A callback overrides the hooks it needs. One that also has ``state_dict`` / ``load_state_dict`` travels in the
``last`` checkpoint under its name, so a resumed run continues it exactly (e.g. ``History``).

The best-epoch rule is one mechanism, ``BestEpoch``, with the criterion as a parameter: the estimators keep the
lowest validation loss (``lower_loss``), classify the highest validation accuracy with ties to the lower loss
(``higher_accuracy_then_lower_loss``).
"""

from __future__ import annotations

from collections.abc import Callable

from tqdm.auto import tqdm

Metrics = dict[str, float]
Criterion = Callable[[Metrics, Metrics], bool]  # better(new, best)


class Callback:
    """Hooks of ``training.fit``; each default does nothing. ``epoch`` counts from 0 in ``on_epoch_end``."""

    def on_train_begin(self, start_epoch: int, epochs: int) -> None:
        pass

    def on_step(self, step: int) -> None:
        pass

    def on_epoch_end(self, epoch: int, loss: float) -> bool | None:
        """Return True to stop training after this epoch."""

    def on_train_end(self) -> None:
        pass


def lower_loss(tol: float = 0.0) -> Criterion:
    """Better = a validation loss lower than the best by more than ``tol``."""
    return lambda new, best: new["loss"] < best["loss"] - tol


def higher_accuracy_then_lower_loss(new: Metrics, best: Metrics) -> bool:
    """Better = a higher accuracy; at equal accuracy, a lower loss; a whole tie keeps the earlier epoch.

    A small validation split saturates (on digits all 144 images are right from about epoch 5 on), and "the
    first epoch at the maximum" would pick an early, barely trained network over later, more confident ones.
    """
    return (new["accuracy"], -new["loss"]) > (best["accuracy"], -best["loss"])


class BestEpoch:
    """The best epoch so far under ``better``, starting from ``initial``; ``keep(epoch, metrics)`` is called at
    every improvement (to copy or save the weights). Epochs count from 1 here: the number of epochs done."""

    def __init__(self, better: Criterion, initial: Metrics, keep: Callable[[int, Metrics], None] | None = None):
        self.better, self.keep = better, keep
        self.best, self.epoch = dict(initial), 0

    def update(self, metrics: Metrics, epoch: int) -> bool:
        """Record ``metrics`` of ``epoch``; True (and ``keep``) when they beat the best so far."""
        if not self.better(metrics, self.best):
            return False
        self.best, self.epoch = dict(metrics), epoch
        if self.keep is not None:
            self.keep(epoch, self.best)
        return True

    def state_dict(self) -> dict:
        return {**self.best, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best = {name: state[name] for name in self.best}
        self.epoch = state["epoch"]


class EarlyStopping(Callback):
    """Measure after every epoch, keep the best epoch, stop after ``patience`` epochs without improvement."""

    def __init__(self, best: BestEpoch, measure: Callable[[float], Metrics], patience: int):
        self.best, self.measure, self.patience = best, measure, patience

    def on_epoch_end(self, epoch: int, loss: float) -> bool:
        self.best.update(self.measure(loss), epoch + 1)
        return epoch + 1 - self.best.epoch >= self.patience


class History(list, Callback):
    """Per-epoch records (dicts) appended by the front end; travels in the ``last`` checkpoint, so a resumed run
    reports every epoch."""

    def state_dict(self) -> dict:
        return {"epochs": list(self)}

    def load_state_dict(self, state: dict) -> None:
        self[:] = state["epochs"]


class Progress(Callback):
    """A progress bar over epochs with the training loss and whatever ``postfix()`` adds (e.g. validation)."""

    def __init__(self, desc: str, enabled: bool = True, postfix: Callable[[], dict] | None = None,
                 leave: bool = False):
        self.desc, self.enabled, self.postfix, self.leave = desc, enabled, postfix, leave
        self.bar = None

    def on_train_begin(self, start_epoch: int, epochs: int) -> None:
        self.bar = tqdm(desc=self.desc, total=epochs, initial=start_epoch, disable=not self.enabled,
                        leave=self.leave)

    def on_epoch_end(self, epoch: int, loss: float) -> None:
        self.bar.n = epoch + 1
        self.bar.set_postfix(loss=f"{loss:.4f}", **(self.postfix() if self.postfix else {}))

    def on_train_end(self) -> None:
        self.bar.close()
