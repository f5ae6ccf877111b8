"""A classify run killed with SIGKILL part way and resumed ends exactly as the same run uninterrupted, and its
records (metrics.csv, run.json) tell each epoch once and who resumed it."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import torch

from meta_neighborhoods import checkpoint

EPOCHS = 8
RUN = ["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "mn_ifilm", "--epochs", str(EPOCHS),
       "--batch-size", "32", "--train-subset", "600", "--device", "cpu", "--quiet"]
# One thread in every process: float sums then run in the same order, so "exactly" can mean bit for bit.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _command(*args):
    return [sys.executable, "-m", "meta_neighborhoods", *args]


def _epoch_saved(out):
    try:
        return checkpoint.load(out / "last")[1]["epoch"]
    except checkpoint.CheckpointError:
        return 0


def _kill_after_an_epoch(out):
    """Start the run, SIGKILL it as soon as a checkpoint exists; returns the epoch it had saved."""
    process = subprocess.Popen(_command(*RUN, "--out", str(out)), env=ENV, stdout=subprocess.DEVNULL,
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


def test_a_killed_run_resumes_to_exactly_the_uninterrupted_result(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(_command(*RUN, "--out", str(whole)), env=ENV, check=True, capture_output=True)

    saved_epoch = _kill_after_an_epoch(killed)
    assert 1 <= saved_epoch < EPOCHS and not (killed / "metrics.json").exists()
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
    assert len(resumed["history"]) == EPOCHS

    expected, resumed = (_csv(run / "metrics.csv") for run in (whole, killed))
    assert [row["epoch"] for row in resumed] == [str(epoch) for epoch in range(1, EPOCHS + 1)]  # each epoch once
    for name in ("train_loss", "validation_loss", "validation_accuracy", "learning_rate"):
        assert [row[name] for row in resumed] == [row[name] for row in expected], name
    record = json.loads((killed / "run.json").read_text())
    assert record["provenance"]["command"][1:] == [*RUN, "--out", str(killed)]
    assert [entry["command"][1:] for entry in record["resumed"]] == [["classify", "--resume", str(killed), "--quiet"]]


def _csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
