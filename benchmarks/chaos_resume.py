"""Chaos check of exact resume: SIGKILL a classify run at random moments, --resume it each time, and compare.

The reference is the same run uninterrupted. The killed run is started and killed ``--kills`` times, each time
continued with ``--resume`` (or started afresh with ``--overwrite`` when it died before its first checkpoint);
then it runs to the end. Odd kills come at a random moment from the start (often during start-up or data
loading); even kills wait until the process has written a checkpoint and then come at a random moment of the
next epoch (training, validation, or the writing of ``best`` and ``last``).
It must end bit-identical to the reference (every tensor of checkpoints ``best`` and ``last``, the metrics that do
not depend on timing) with no temporary file left in the run folder. Needs ../shared/data/sklearn_digits. What it
printed is written to ``OUT/chaos_resume.txt`` under a header of what produced it (``record.py``: commit, command,
versions; the runs' one thread).

    python benchmarks/chaos_resume.py [--kills 10] [--seed 0] [--out /tmp/chaos]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from meta_neighborhoods import checkpoint
from record import Record  # benchmarks/: scripts run from this folder

EPOCHS = 12
RUN = ["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "mn_ifilm", "--epochs", str(EPOCHS),
       "--batch-size", "32", "--train-subset", "600", "--device", "cpu", "--quiet"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # one thread: sums in one order, bit for bit


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "meta_neighborhoods", *args]


def _epoch(out: Path) -> int:
    """The epoch of checkpoint ``last``; 0 before the run wrote one (a kill during start-up)."""
    if not checkpoint.exists(out / "last"):
        return 0
    try:
        return checkpoint.load(out / "last")[1]["epoch"]
    except checkpoint.CheckpointError:
        return 0


def _continue(out: Path) -> list[str]:
    """``classify --resume`` once a checkpoint exists; before that, the run afresh (over what it had begun)."""
    if checkpoint.exists(out / "last"):
        return ["classify", "--resume", str(out), "--quiet"]
    return [*RUN, "--out", str(out), "--overwrite"]


def _what(args: list[str]) -> str:
    return "resume" if "--resume" in args else "fresh start"


def _manifest_time(out: Path) -> float:
    path = out / "last.json"
    return path.stat().st_mtime_ns if path.exists() else 0


def _kill_once(out: Path, delay: float, after_a_checkpoint: bool, deadline: float = 300) -> str:
    """Start (or resume) the run and SIGKILL it ``delay`` seconds after its start, or after its next checkpoint."""
    args = _continue(out)
    before = _manifest_time(out)
    process = subprocess.Popen(_command(*args), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    started = time.monotonic()
    while after_a_checkpoint and _manifest_time(out) == before and process.poll() is None:
        if time.monotonic() - started > deadline:
            break
        time.sleep(0.005)
    try:
        process.wait(timeout=delay)
        return f"{_what(args)} finished before the kill (rc {process.returncode})"
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        moment = "its next checkpoint" if after_a_checkpoint else "its start"
        return f"{_what(args)} killed {delay:.2f} s after {moment}, at epoch {_epoch(out)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/chaos"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    with Record(None, args.out / "chaos_resume.txt", threads=1):  # ENV's one thread, the runs'
        failed = _kill_and_compare(args)
    return int(failed)


def _kill_and_compare(args) -> bool:
    """Run the reference, kill and resume the other run ``--kills`` times, finish it and compare; whether they
    differ (or a temporary file was left)."""
    rng = random.Random(args.seed)
    whole, killed = args.out / "whole", args.out / "killed"
    started = time.perf_counter()
    subprocess.run(_command(*RUN, "--out", str(whole)), env=ENV, check=True, capture_output=True)
    reference_seconds = time.perf_counter() - started
    killed.mkdir(parents=True)
    epoch_seconds = reference_seconds / EPOCHS
    for kill in range(args.kills):
        odd = kill % 2 == 0
        delay = rng.uniform(0.2, 4.0) if odd else rng.uniform(0.0, epoch_seconds)
        print(f"kill {kill + 1}: {_kill_once(killed, delay, after_a_checkpoint=not odd)}", flush=True)
    subprocess.run(_command(*_continue(killed)), env=ENV, check=True, capture_output=True)
    different = [f"{stem}:{name}" for stem in ("best", "last")
                 for name, tensor in checkpoint.load(whole / stem)[0].items()
                 if not torch.equal(tensor, checkpoint.load(killed / stem)[0][name])]
    expected, resumed = (json.loads((run / "metrics.json").read_text()) for run in (whole, killed))
    keys = ("test_accuracy", "validation_accuracy", "validation_loss", "best_epoch", "history", "config")
    metrics = [key for key in keys if expected[key] != resumed[key]]
    leftovers = sorted(str(p.relative_to(killed)) for p in killed.rglob("*.tmp"))
    print(f"after {args.kills} kills: tensors differing {len(different)} {different[:3]}, metrics differing "
          f"{metrics}, temporary files left {leftovers}; test accuracy {resumed['test_accuracy']:.4f} "
          f"(uninterrupted {expected['test_accuracy']:.4f})")
    return bool(different or metrics or leftovers)


if __name__ == "__main__":
    sys.exit(main())
