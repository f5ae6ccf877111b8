"""A classify run killed with SIGKILL part way and resumed ends exactly as the same run uninterrupted (MN+iFiLM, and
MAXL, whose label generator trains beside the network), and its records (metrics.csv, run.json) tell each epoch
once and who resumed it."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from meta_neighborhoods import checkpoint
from helpers import csv_rows

EPOCHS = {"mn_ifilm": 4, "maxl": 4}  # by method: a maxl step (second-order lookahead) costs 2-3 mn_ifilm steps
# One thread in every process: float sums then run in the same order, so "exactly" can mean bit for bit.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _command(*args):
    return [sys.executable, "-m", "meta_neighborhoods", *args]


def _run(method):
    return ["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", method, "--epochs",
            str(EPOCHS[method]), "--batch-size", "32", "--train-subset", "600", "--device", "cpu", "--quiet"]


def _epoch_saved(out):
    try:
        return checkpoint.load(out / "last")[1]["epoch"]
    except (checkpoint.CheckpointError, FileNotFoundError):  # not written yet, or being replaced
        return 0


def _kill_after_an_epoch(out, run):
    """Start the run, SIGKILL it as soon as a checkpoint exists; returns the epoch it had saved."""
    process = subprocess.Popen(_command(*run, "--out", str(out)), env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _epoch_saved(out) < 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    return _epoch_saved(out)


def _tensors(out, stem):
    return checkpoint.load(out / stem)[0]


@pytest.mark.parametrize("method", list(EPOCHS))
def test_a_killed_run_resumes_to_exactly_the_uninterrupted_result(tmp_path, method):
    whole, killed, run, epochs = tmp_path / "whole", tmp_path / "killed", _run(method), EPOCHS[method]
    subprocess.run(_command(*run, "--out", str(whole)), env=ENV, check=True, capture_output=True)

    saved_epoch = _kill_after_an_epoch(killed, run)
    assert 1 <= saved_epoch < epochs and not (killed / "metrics.json").exists()
    logged = csv_rows(killed / "metrics.csv")[:saved_epoch]  # with the timings of the epochs the checkpoint holds
    done = subprocess.run(_command("classify", "--resume", str(killed), "--quiet"), env=ENV, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr

    for stem in ("last", "best"):
        expected, resumed = _tensors(whole, stem), _tensors(killed, stem)
        assert expected.keys() == resumed.keys()
        different = [name for name in expected if not torch.equal(expected[name], resumed[name])]
        assert not different, f"{stem}: {different[:5]}"
    expected, resumed = (json.loads((run / "metrics.json").read_text()) for run in (whole, killed))
    assert resumed["resumed"] and not expected["resumed"]
    for key in ("test_accuracy", "validation_accuracy", "best_epoch", "history", "config"):
        assert resumed[key] == expected[key], key
    assert len(resumed["history"]) == epochs

    expected, resumed = (csv_rows(run / "metrics.csv") for run in (whole, killed))
    assert [row["epoch"] for row in resumed] == [str(epoch) for epoch in range(1, epochs + 1)]  # each epoch once
    for name in ("train_loss", "validation_loss", "validation_accuracy", "learning_rate"):
        assert [row[name] for row in resumed] == [row[name] for row in expected], name
    assert resumed[:saved_epoch] == logged  # continued from the checkpoint: its epochs were not trained again
    record = json.loads((killed / "run.json").read_text())
    assert record["provenance"]["command"] == _command(*run, "--out", str(killed))  # as it can run again
    assert [entry["command"] for entry in record["resumed"]] == [_command("classify", "--resume", str(killed),
                                                                          "--quiet")]


