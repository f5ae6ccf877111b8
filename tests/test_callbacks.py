"""The training loop's callbacks: one best-epoch mechanism with its criterion as a parameter, early stopping,
the order the loop calls them in, state that travels in the ``last`` checkpoint, and the per-epoch logs (metrics.csv,
TensorBoard)."""

import json
import math
import sys

import pytest
import torch

from meta_neighborhoods.callbacks import (
    BestEpoch, Callback, EarlyStopping, History, MetricsLog, Progress, TensorBoardLog, WeightAverage,
    higher_accuracy_then_lower_loss, lower_loss, tensorboard_available,
)
from meta_neighborhoods.checkpoint import CheckpointError
from meta_neighborhoods.datasets.batches import TensorBatches
from meta_neighborhoods.heads import MLPHead
from meta_neighborhoods.model import MetaNeighborhoods
from meta_neighborhoods.training import OptimizerSpec, fit
from helpers import csv_rows


def test_lower_loss_needs_more_than_the_tolerance():
    better = lower_loss(0.1)
    assert better({"loss": 0.85}, {"loss": 1.0}) and not better({"loss": 0.95}, {"loss": 1.0})
    assert not lower_loss(0.0)({"loss": 1.0}, {"loss": 1.0})  # a tie keeps the earlier epoch


def test_the_weight_average_before_any_step_is_the_model_itself():
    """Divided by 1 - decay^steps, the average of no step is 0 / 0: the model's own weights stand in."""
    model = _setup()[0]
    own = {name: p.detach().clone() for name, p in model.named_parameters()}
    with WeightAverage(model, 0.9).applied():
        assert all(torch.equal(p, own[name]) for name, p in model.named_parameters())


def test_a_best_epoch_of_zero_loads():
    """Epoch 0: nothing measured yet (a run checkpointed before its first better epoch)."""
    best = BestEpoch(lower_loss(), {"loss": 1.0})
    best.load_state_dict({"loss": 1.0, "epoch": 0})
    assert (best.epoch, best.best) == (0, {"loss": 1.0})


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
    fit(model, batches, epochs=2, callbacks={"log": Logger(history), "history": history}, last=tmp_path / "last")
    resumed_model, resumed_batches = _setup()
    resumed = History()
    fit(resumed_model, resumed_batches, epochs=3, callbacks={"log": Logger(resumed), "history": resumed},
        last=tmp_path / "last", resume=True)
    assert [r["epoch"] for r in resumed] == [1, 2, 3] and resumed[:2] == list(history)


# --- metrics.csv and TensorBoard -------------------------------------------------------------------------


def _logged_fit(folder, epochs, resume=False, tensorboard=False, history=None, validation_loss=0.5):
    """``fit`` with a MetricsLog (and a TensorBoardLog) whose validation column is ``validation_loss``; the learning
    rate drops tenfold after epoch 2."""
    model, batches = _setup()
    log = MetricsLog(folder / "metrics.csv", ("validation_loss",), lambda: {"validation_loss": validation_loss})
    callbacks = {"metrics": log, **({"tensorboard": TensorBoardLog(folder / "tb", log)} if tensorboard else {}),
                 **({"history": history} if history is not None else {})}
    fit(model, batches, epochs=epochs, optimizer=OptimizerSpec(0.01, milestones=(2,)), callbacks=callbacks,
        last=folder / "last", resume=resume)
    return log


def test_metrics_csv_has_a_row_per_epoch_with_its_learning_rate(tmp_path):
    _logged_fit(tmp_path, epochs=3)
    rows = csv_rows(tmp_path / "metrics.csv")
    assert list(rows[0]) == ["epoch", "train_loss", "validation_loss", "learning_rate", "seconds"]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx([0.01, 0.01, 0.001])
    assert all(float(r["seconds"]) >= 0 and math.isfinite(float(r["train_loss"])) for r in rows)


def test_a_resumed_run_logs_each_epoch_once(tmp_path):
    """Killed after logging epoch 3 but before checkpointing it: the resumed run does epoch 3 again, and the file
    holds it once (the row of the checkpointed state, not the killed run's)."""
    _logged_fit(tmp_path, epochs=2)
    before = csv_rows(tmp_path / "metrics.csv")
    with open(tmp_path / "metrics.csv", "a") as handle:
        handle.write("3,9.9,0.5,0.001,1.0\n")  # what the killed run appended
    _logged_fit(tmp_path, epochs=4, resume=True)
    rows = csv_rows(tmp_path / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4] and rows[:2] == before
    assert float(rows[2]["train_loss"]) != 9.9


@pytest.mark.parametrize("loss", [math.nan, math.inf])
def test_a_run_whose_validation_loss_overflowed_resumes(tmp_path, loss):
    """A validation loss of NaN (a network whose validation predictions overflow while its training loss is
    finite) went into checkpoint last, whose history was then refused as damaged: the run could not resume."""
    _logged_fit(tmp_path, epochs=2, validation_loss=loss)
    log = _logged_fit(tmp_path, epochs=3, resume=True, validation_loss=loss)
    assert [row["epoch"] for row in log.rows] == [1, 2, 3]
    assert all(str(row["validation_loss"]) == str(loss) for row in log.rows)
    History().load_state_dict({"epochs": [{"epoch": 1, "validation_loss": loss, "validation_accuracy": 0.5}]})
    best = BestEpoch(higher_accuracy_then_lower_loss, {"accuracy": -1.0, "loss": math.inf})
    best.load_state_dict({"accuracy": 0.5, "loss": loss, "epoch": 1})


@pytest.mark.parametrize("rows", [[{"epoch": 1}], "rows", [{"epoch": "1", "train_loss": 1.0, "validation_loss": 1.0,
                                                             "learning_rate": 0.1, "seconds": 1.0}],
                                  [{"epoch": 0, "train_loss": 1.0, "validation_loss": 1.0, "learning_rate": 0.1,
                                    "seconds": 1.0}],
                                  [{"epoch": 1, "train_loss": 10**400, "validation_loss": 1.0, "learning_rate": 0.1,
                                    "seconds": 1.0}],
                                  [{"epoch": 1, "train_loss": 1.0, "validation_loss": -math.inf, "learning_rate": 0.1,
                                    "seconds": 1.0}],
                                  [{"epoch": 1, "train_loss": 1.0, "validation_loss": 1.0, "learning_rate": math.nan,
                                    "seconds": 1.0}]])
def test_a_damaged_metrics_log_state_is_refused(tmp_path, rows):
    log = MetricsLog(tmp_path / "m.csv", ("validation_loss",), dict)
    with pytest.raises(ValueError, match="records of numbers with the columns epoch, train_loss"):
        log.load_state_dict({"rows": rows})


@pytest.mark.parametrize("epochs", [[1, 1], [2], [1, 3, 2]])  # found in a crafted last.json: a resume wrote them
def test_a_metrics_log_state_whose_rows_are_not_epochs_1_2_in_order_is_refused(tmp_path, epochs):
    log = MetricsLog(tmp_path / "m.csv", ("validation_loss",), dict)
    row = {"train_loss": 1.0, "validation_loss": 1.0, "learning_rate": 0.1, "seconds": 1.0}
    with pytest.raises(ValueError, match=r"epochs 1, 2, \.\.\. in order, each once"):
        log.load_state_dict({"rows": [{"epoch": epoch, **row} for epoch in epochs]})
    log.load_state_dict({"rows": [{"epoch": epoch, **row} for epoch in (1, 2)]})
    assert [row["epoch"] for row in log.rows] == [1, 2]

@pytest.mark.parametrize("state", [{"accuracy": "x", "loss": 1.0, "epoch": 2}, {"accuracy": 0.5, "loss": 1.0, "epoch": "x"},
                                   {"accuracy": 0.5, "loss": 1.0, "epoch": -1}, {"accuracy": True, "loss": 1.0, "epoch": 1},
                                   {"accuracy": 7.5, "loss": 1.0, "epoch": 2},
                                   {"accuracy": -0.5, "loss": 1.0, "epoch": 2},
                                   {"accuracy": 10**400, "loss": 1.0, "epoch": 2},
                                   {"accuracy": 0.5, "loss": 10**400, "epoch": 2},
                                   {"accuracy": 0.5, "loss": -math.inf, "epoch": 2},
                                   {"accuracy": math.nan, "loss": 1.0, "epoch": 2},
                                   {"accuracy": 0.5, "loss": 1.0, "epoch": 0}])
def test_a_damaged_best_epoch_state_is_refused(state):
    """Found by crafting a last.json: a text accuracy failed a whole epoch later, a text epoch was reported, an
    accuracy of 7.5 kept its network over every epoch the resumed run trained, and one of 10**400 (no float holds
    it) failed a whole epoch later. Epoch 0 (nothing measured yet) holds the initial metrics and nothing else."""
    best = BestEpoch(lambda new, old: new["accuracy"] > old["accuracy"], {"accuracy": 0.0, "loss": math.inf})
    with pytest.raises(ValueError, match="the best epoch should be a count of epochs and its accuracy, loss numbers"):
        best.load_state_dict(state)
    best.load_state_dict({"accuracy": 0.5, "loss": 1.0, "epoch": 2})
    assert (best.best, best.epoch) == ({"accuracy": 0.5, "loss": 1.0}, 2)


@pytest.mark.parametrize("epochs", ["x", [{"loss": "x"}], [[1.0]], [{"loss": [1.0]}], [{"validation_accuracy": 7.5}],
                                    [{"loss": 10**400}], [{"loss": -math.inf}], [{"epoch": 0, "loss": 1.0}],
                                    [{"epoch": 1.5, "loss": 1.0}]])
def test_a_damaged_history_state_is_refused(epochs):
    with pytest.raises(ValueError, match="the history should be a list of records of numbers"):
        History().load_state_dict({"epochs": epochs})


@pytest.mark.parametrize("where, said", [
    ("history", r"the state of 'history' names epoch 5, outside the 2 epochs the checkpoint has trained"),
    ("log", r"the state of 'metrics' is damaged \(ValueError: the rows should be those of epochs 1, 2"),
    ("log rows", r"the state of 'metrics' names epoch 3, outside the 2 epochs the checkpoint has trained"),
])
def test_a_state_that_names_an_epoch_past_its_checkpoint_is_refused(tmp_path, where, said):
    """A history record or a log row of epoch 5 in the checkpoint of epoch 2: what the resumed run would report
    comes from no epoch it trained (a best epoch likewise: test_classification)."""
    _logged_fit(tmp_path, epochs=2, history=History())
    meta = json.loads((tmp_path / "last.json").read_text())
    meta["stateful"]["history"]["epochs"] = [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.4}]
    records = meta["stateful"]["history"]["epochs"] if where == "history" else meta["stateful"]["metrics"]["rows"]
    if where == "log rows":  # epochs 1, 2, 3 in order, one more than the checkpoint trained
        records.append({**records[1], "epoch": 3})
    else:
        records[1]["epoch"] = 5
    (tmp_path / "last.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"last.json: " + said):
        _logged_fit(tmp_path, epochs=3, resume=True, history=History())


@pytest.mark.parametrize("edit, said", [
    (lambda meta: meta["stateful"].update(plateau={"epoch": 1}), r"unknown state 'plateau'"),  # another version's
    (lambda meta: meta["stateful"]["metrics"].update(columns=["loss"]), r"unknown state 'metrics.columns'"),
    (lambda meta: meta.update(step=10**20), r"epoch 2, step 100000000000000000000 and a history of 2 losses"),
])
def test_a_state_a_run_never_saves_is_refused(tmp_path, edit, said):
    """Found by crafting a last.json: a callback's state of another name, or a key its state lacks, was dropped
    without a word, and a step count of 10**20 went on counting."""
    _logged_fit(tmp_path, epochs=2, history=History())
    meta = json.loads((tmp_path / "last.json").read_text())
    edit(meta)
    (tmp_path / "last.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"last.json: " + said):
        _logged_fit(tmp_path, epochs=3, resume=True, history=History())


def test_tensorboard_events_hold_the_same_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert tensorboard_available()
    log = _logged_fit(tmp_path, epochs=2, tensorboard=True)
    _logged_fit(tmp_path, epochs=3, resume=True, tensorboard=True)
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    assert {"train_loss", "validation_loss", "learning_rate", "seconds"} <= set(events.Tags()["scalars"])
    losses = events.Scalars("train_loss")
    assert [e.step for e in losses] == [1, 2, 3]
    assert losses[0].value == pytest.approx(log.rows[0]["train_loss"])


def test_a_resumed_run_purges_the_tensorboard_events_after_its_checkpoint(tmp_path, monkeypatch):
    """Without TensorBoard installed too: a resume from epoch 3 purges the events of epoch 4 on (steps are epochs
    from 1), those a killed run logged past its checkpoint; a new run purges nothing."""
    import types

    opened = []
    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = lambda log_dir, purge_step: opened.append(purge_step)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    for start in (0, 3):
        TensorBoardLog(tmp_path, metrics=None).on_train_begin(start, 5)
    assert opened == [None, 4]


def test_a_tensorboard_folder_that_is_a_link_is_refused_before_tensorboard_is_imported(tmp_path, monkeypatch):
    """SummaryWriter writes through a link: a resumed run's events would have gone outside its folder."""
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # importing it would fail
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "tensorboard").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileExistsError, match=f"{tmp_path / 'tensorboard'} is a link: the folders a run writes"):
        TensorBoardLog(tmp_path / "tensorboard", metrics=None).on_train_begin(2, 5)
    assert not any((tmp_path / "elsewhere").iterdir())


def test_a_progress_bar_of_steps_advances_within_an_epoch_and_shows_it(monkeypatch, capsys):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    progress = Progress("train", enabled=True, steps=4)
    progress.on_train_begin(1, 3)  # resumed after the first epoch
    assert (progress.bar.n, progress.bar.total) == (4, 12)
    for step in range(5, 8):
        progress.on_step(step)
    assert progress.bar.n == 7
    progress.on_epoch_end(1, 0.5)
    assert progress.bar.n == 8 and "epoch=2/3" in str(progress.bar)
    progress.on_train_end()
    assert "train" in capsys.readouterr().err


def test_a_progress_bar_shows_on_a_terminal_only(monkeypatch, capsys):
    for tty in (False, True):
        monkeypatch.setattr(sys.stderr, "isatty", lambda: tty, raising=False)
        progress = Progress("train", enabled=True)
        progress.on_train_begin(0, 3)
        progress.on_epoch_end(0, 0.5)
        progress.on_train_end()
        assert ("train" in capsys.readouterr().err) == tty  # a log redirected to a file gets no carriage returns


@pytest.mark.parametrize("tty, log, enabled", [(False, True, True), (True, True, True), (False, False, True),
                                               (False, True, False)])
def test_a_progress_off_a_terminal_logs_a_line_each_epoch_where_asked(monkeypatch, caplog, tty, log, enabled):
    """classify redirected to a log said nothing between its start and its end. Not on a terminal (the bar shows
    there), nor where not asked, nor switched off (--quiet, or a process of a torchrun other than the first: every
    process of a run of four would log each epoch)."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty, raising=False)
    progress = Progress("mn", enabled=enabled, postfix=lambda: {"val_acc": "0.9000"}, log=log)
    with caplog.at_level("INFO", logger="meta_neighborhoods"):
        progress.on_train_begin(0, 2)
        for epoch in range(2):
            progress.on_epoch_end(epoch, 0.5)
        progress.on_train_end()
    expected = ["mn: epoch 1/2, loss 0.5000, val_acc 0.9000", "mn: epoch 2/2, loss 0.5000, val_acc 0.9000"]
    assert caplog.messages == (expected if log and enabled and not tty else [])


def test_the_weight_average_gives_the_model_its_own_weights_back_after_the_block():
    """Without the restore, training went on from the averaged weights after every validation (ema_decay=0.99 is
    the estimators' default); only an accuracy threshold of another test noticed."""
    torch.manual_seed(0)
    model = MetaNeighborhoods(MLPHead(3, (4,), 1), dictionary_size=5)
    average = WeightAverage(model, 0.9)
    average.on_step(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    average.on_step(1)
    own = {name: p.detach().clone() for name, p in model.named_parameters()}
    with average.applied():
        assert not any(torch.equal(p, own[name]) for name, p in model.named_parameters())  # the average, now
    assert all(torch.equal(p, own[name]) for name, p in model.named_parameters())
