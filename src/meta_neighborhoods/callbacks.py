"""What differs between front ends of the one training loop (``training.fit``): hooks called by the loop.

A callback overrides the hooks it needs. One that also has ``state_dict`` / ``load_state_dict`` travels in the
``last`` checkpoint under its name, so a resumed run continues it exactly (e.g. ``History``).

The best-epoch rule is one mechanism, ``BestEpoch``, with the criterion as a parameter: the estimators keep the
lowest validation loss (``lower_loss``), classify the highest validation accuracy with ties to the lower loss
(``higher_accuracy_then_lower_loss``).
"""

from __future__ import annotations

import csv
import importlib.util
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .io import atomic_write, inner_folder
from .validation import is_finite, is_int

LOGGER = logging.getLogger(__name__)

Metrics = dict[str, float]
Criterion = Callable[[Metrics, Metrics], bool]  # better(new, best)


class Callback:
    """Hooks of ``training.fit``; each default does nothing. ``epoch`` counts from 0 in ``on_epoch_end``."""

    def on_train_begin(self, start_epoch: int, epochs: int) -> None:
        pass

    def on_epoch_start(self, epoch: int, learning_rate: float) -> None:
        """``learning_rate``: the base one this epoch trains with (the first parameter group's; the keys at
        ``key_lr_scale`` and MAXL's generator train at a multiple of it, see ``parameter_groups``)."""

    def on_step(self, step: int) -> None:
        pass

    def on_epoch_end(self, epoch: int, loss: float) -> bool | None:
        """Return True to stop training after this epoch."""

    def on_train_end(self) -> None:
        pass


def _measurable(name: str, value) -> bool:
    """Whether ``value`` could be the metric ``name`` of an epoch, as read back from a checkpoint: a finite number
    (an int of 400 digits failed only when printed), an accuracy in [0, 1], an epoch counted from 1; a loss may also
    be NaN or infinite (a network whose validation predictions overflow trains on, and its run resumes)."""
    if name == "epoch":
        return is_int(value) and value >= 1
    if name.endswith("loss") and type(value) is float and (math.isnan(value) or value == math.inf):
        return True
    return is_finite(value) and (0 <= value <= 1 if "accuracy" in name else True)


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
        """Epoch 0 (nothing measured yet) holds the initial metrics; a later one, metrics an epoch can measure."""
        best, epoch = {name: state[name] for name in self.best}, state["epoch"]
        if not (is_int(epoch) and epoch >= 0 and (best == self.best if epoch == 0 else all(
                _measurable(name, value) for name, value in best.items()))):
            raise ValueError(f"the best epoch should be a count of epochs and its {', '.join(best)} numbers (finite "
                             f"but a loss, an accuracy in [0, 1]; at epoch 0 the initial ones), got {state!r:.200}")
        self.best, self.epoch = best, epoch


class EarlyStopping(Callback):
    """Measure after every epoch, keep the best epoch, stop after ``patience`` epochs without improvement."""

    def __init__(self, best: BestEpoch, measure: Callable[[float], Metrics], patience: int):
        self.best, self.measure, self.patience = best, measure, patience

    def on_epoch_end(self, epoch: int, loss: float) -> bool:
        self.best.update(self.measure(loss), epoch + 1)
        return epoch + 1 - self.best.epoch >= self.patience


class WeightAverage(Callback):
    """An exponential moving average of the parameters, updated after every optimiser step (Polyak averaging):
    it smooths out the last steps' noise (here the slot dropout's and the minibatches'), so the epoch that early
    stopping keeps depends less on where the last step happened to land. It starts at zero and is divided by
    1 - decay^steps (Adam's bias correction): the initial weights carry no weight, however short the fit."""

    def __init__(self, model: nn.Module, decay: float):
        self.model, self.decay, self.steps = model, decay, 0
        self.average = {name: torch.zeros_like(p) for name, p in model.named_parameters()}

    @torch.no_grad()
    def on_step(self, step: int) -> None:
        self.steps += 1
        for name, p in self.model.named_parameters():
            self.average[name].lerp_(p, 1.0 - self.decay)

    def carried(self) -> dict:
        """The average and its count of steps (copies, on the CPU), for ``training_state.Carried``."""
        return {"decay": self.decay, "steps": self.steps,
                "average": {name: t.to("cpu", copy=True) for name, t in self.average.items()}}

    @torch.no_grad()
    def go_on(self, carried: dict | None) -> None:
        """Continue the average ``carried()`` gave (if any, and of this decay: another decay's would be weighed
        wrongly), which is left as it was."""
        if carried is not None and carried["decay"] == self.decay:
            self.steps = carried["steps"]
            for name, t in self.average.items():
                t.copy_(carried["average"][name])

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the averaged parameters inside the block (its own before any step) and its own again
        after it."""
        params = dict(self.model.named_parameters())
        own = {name: p.detach().clone() for name, p in params.items()}
        if self.steps:
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(self.average[name] / (1.0 - self.decay ** self.steps))
        try:
            yield
        finally:
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(own[name])


class History(list, Callback):
    """Per-epoch records (dicts) appended by the front end; travels in the ``last`` checkpoint, so a resumed run
    reports every epoch."""

    def state_dict(self) -> dict:
        return {"epochs": list(self)}

    def load_state_dict(self, state: dict) -> None:
        epochs = state["epochs"]
        if not (isinstance(epochs, list) and all(isinstance(record, dict) and all(
                isinstance(name, str) and _measurable(name, value) for name, value in record.items())
                for record in epochs)):
            raise ValueError("the history should be a list of records of numbers, one per epoch (finite but a loss, "
                             "an accuracy in [0, 1], an epoch counted from 1)")
        self[:] = epochs


class MetricsLog(Callback):
    """A CSV file with a row per epoch, as a Lightning ``CSVLogger`` keeps: the epoch, the training loss, what
    ``measured()`` returns (e.g. validation loss and accuracy), the learning rate and the epoch's seconds.

    A row is appended as each epoch ends. The rows also travel in checkpoint ``last``, and a resumed run rewrites
    the file from them before it continues: an epoch the killed run logged after its last checkpoint is done
    again, and logged once.
    """

    def __init__(self, path: Path, columns: tuple[str, ...], measured: Callable[[], Metrics]):
        self.path, self.measured = Path(path), measured
        self.columns = ("epoch", "train_loss", *columns, "learning_rate", "seconds")
        self.rows: list[dict] = []
        self.started = self.learning_rate = None

    def on_train_begin(self, start_epoch: int, epochs: int) -> None:
        atomic_write(self.path, lambda tmp: self._write(tmp, "w", self.rows))

    def on_epoch_start(self, epoch: int, learning_rate: float) -> None:
        self.started, self.learning_rate = time.perf_counter(), learning_rate

    def on_epoch_end(self, epoch: int, loss: float) -> None:
        row = {"epoch": epoch + 1, "train_loss": loss, **self.measured(), "learning_rate": self.learning_rate,
               "seconds": round(time.perf_counter() - self.started, 3)}
        self.rows.append(row)
        self._write(self.path, "a", [row])

    def _write(self, path, mode: str, rows: list[dict]) -> None:
        with open(path, mode, newline="") as handle:
            writer = csv.DictWriter(handle, self.columns)
            if mode == "w":
                writer.writeheader()
            writer.writerows(rows)

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict) -> None:
        rows = state["rows"]
        if not (isinstance(rows, list) and all(isinstance(row, dict) and list(row) == list(self.columns) and all(
                type(value) in (int, float) and _measurable(name, value) for name, value in row.items())
                for row in rows)):
            raise ValueError(f"the rows should be records of numbers with the columns {', '.join(self.columns)} "
                             "(finite but a loss, an accuracy in [0, 1], an epoch counted from 1)")
        if [row["epoch"] for row in rows] != list(range(1, len(rows) + 1)):  # else metrics.csv would say so
            raise ValueError("the rows should be those of epochs 1, 2, ... in order, each once")
        self.rows = [dict(row) for row in rows]


def tensorboard_available() -> bool:
    """Whether TensorBoard event files can be written (``torch.utils.tensorboard`` needs the tensorboard package)."""
    return importlib.util.find_spec("tensorboard") is not None


class TensorBoardLog(Callback):
    """The rows of a ``MetricsLog`` as TensorBoard scalars (step = epoch) in ``log_dir``; needs TensorBoard
    (``tensorboard_available``). A resumed run purges the events logged after its checkpoint. ``log_dir`` may not
    be a link (refused here, before TensorBoard is imported): its events would go outside the run folder."""

    def __init__(self, log_dir: Path, metrics: MetricsLog):
        self.log_dir, self.metrics, self.writer = inner_folder(Path(log_dir).parent, Path(log_dir).name), metrics, None

    def on_train_begin(self, start_epoch: int, epochs: int) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imported here: TensorBoard is optional

        self.writer = SummaryWriter(str(self.log_dir), purge_step=start_epoch + 1 if start_epoch else None)

    def on_epoch_end(self, epoch: int, loss: float) -> None:
        row = self.metrics.rows[-1]
        for name, value in row.items():
            if name != "epoch":
                self.writer.add_scalar(name, value, row["epoch"])
        self.writer.flush()

    def on_train_end(self) -> None:
        if self.writer is not None:
            self.writer.close()


def bar_disabled(enabled: bool) -> bool | None:
    """tqdm's ``disable`` for a bar asked for or not: asked for, it shows on a terminal only (None), so that a log
    redirected to a file does not fill with carriage returns."""
    return None if enabled else True


def report(line: str, enabled: bool = True) -> None:
    """A line on stdout that a user's ``verbose`` asked for (the library's own messages go through logging):
    through tqdm, so that an open bar is redrawn below it."""
    if enabled:
        tqdm.write(line, file=sys.stdout)


class Progress(Callback):
    """A progress bar over epochs with the training loss and whatever ``postfix()`` adds (e.g. validation); given
    the ``steps`` of an epoch, over steps, epoch shown (an image epoch takes minutes on a CPU). ``lines``: instead
    of the bar, a line on stdout each epoch, wherever it goes (scikit-learn's ``verbose``: a notebook or a log
    file, where a bar is not shown). ``log``: where the bar is not shown, that line at INFO on the package's logger
    (a command's long run, redirected to a log, says how far it is)."""

    def __init__(self, desc: str, enabled: bool = True, postfix: Callable[[], dict] | None = None,
                 leave: bool = False, steps: int | None = None, lines: bool = False, log: bool = False):
        self.desc, self.enabled, self.postfix, self.leave, self.steps = desc, enabled, postfix, leave, steps
        self.lines, self.log, self.bar, self.epochs = lines, log, None, 0

    def on_train_begin(self, start_epoch: int, epochs: int) -> None:
        per, self.epochs = self.steps or 1, epochs
        self.bar = tqdm(desc=self.desc, total=epochs * per, initial=start_epoch * per, leave=self.leave,
                        unit="step" if self.steps else "epoch", disable=bar_disabled(self.enabled and not self.lines))

    def on_step(self, step: int) -> None:
        if self.steps:
            self.bar.update(1)

    def on_epoch_end(self, epoch: int, loss: float) -> None:
        self.bar.n = (epoch + 1) * (self.steps or 1)
        losses = {"loss": f"{loss:.4f}", **(self.postfix() if self.postfix else {})}
        self.bar.set_postfix(**({"epoch": f"{epoch + 1}/{self.epochs}"} if self.steps else {}), **losses)
        line = f"{self.desc}: epoch {epoch + 1}/{self.epochs}, " + ", ".join(f"{k} {v}" for k, v in losses.items())
        if self.lines:
            report(line, self.enabled)
        elif self.log and self.enabled and self.bar.disable:
            LOGGER.info("%s", line)

    def on_train_end(self) -> None:
        self.bar.close()
