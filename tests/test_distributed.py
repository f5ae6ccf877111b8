"""Multi-process training (gloo on CPU): two processes equal one process with the same global batch."""

import contextlib
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

from meta_neighborhoods import checkpoint, distributed
from meta_neighborhoods.datasets.batches import ImageBatches
from meta_neighborhoods.datasets.images import ImageSplit
from meta_neighborhoods.heads import MLPHead
from meta_neighborhoods.model import MetaNeighborhoods
from meta_neighborhoods.training import OptimizerSpec, fit

from gloo_processes import train_in_processes

WORLD_SIZE, BATCH, EPOCHS = 2, 16, 3
pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available in this build")


def _split() -> ImageSplit:
    rng = np.random.default_rng(0)
    return ImageSplit(rng.integers(0, 256, (96, 1, 8, 8), dtype=np.uint8), rng.integers(0, 4, 96))


def _model() -> MetaNeighborhoods:
    """No BatchNorm (its statistics are per process) and no slot dropout (its masks are drawn per process)."""
    torch.manual_seed(0)
    return MetaNeighborhoods(MLPHead(64, (16,), 4), task="classification", dictionary_size=12, similarity="cosine",
                             temperature=0.2, learn_temperature=True, extractor=nn.Flatten())


def _train(shard: tuple[int, int]) -> MetaNeighborhoods:
    model = _model()
    batches = ImageBatches(_split(), (0.5,), (0.25,), batch_size=BATCH, shuffle=True, seed=3, shard=shard)
    fit(model, batches, epochs=EPOCHS, optimizer=OptimizerSpec(1e-2, 1e-3, milestones=(2,), grad_clip=1.0))
    return model


def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    parallel, alone = (train_in_processes(_train, world_size, tmp_path) for world_size in (WORLD_SIZE, 1))
    initial = _model().state_dict()
    assert parallel.keys() == alone.keys()
    for name, value in alone.items():
        torch.testing.assert_close(parallel[name], value, rtol=1e-5, atol=1e-6, msg=name)
        assert name == "attention.log_temperature" or not torch.equal(value, initial[name]), f"{name} did not train"


def test_each_process_takes_its_slice_of_every_global_batch():
    split = _split()
    whole = list(ImageBatches(split, (0.5,), (0.25,), batch_size=BATCH, shuffle=True, seed=3))
    shards = [list(ImageBatches(split, (0.5,), (0.25,), batch_size=BATCH, shuffle=True, seed=3, shard=(r, 2)))
              for r in range(2)]
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *shards):
        assert torch.equal(x[0::2], x0) and torch.equal(x[1::2], x1) and torch.equal(y[0::2], y0)
    with pytest.raises(ValueError, match="shard"):
        ImageBatches(split, (0.5,), (0.25,), batch_size=BATCH, shard=(2, 2))
    with pytest.raises(ValueError, match="batch_size 17 must be a multiple of the 2 processes"):
        ImageBatches(split, (0.5,), (0.25,), batch_size=17, shard=(0, 2))  # unequal shares weigh images unequally
    with pytest.raises(ValueError, match=r"1 image\(s\) cannot be shared among 2 processes"):
        ImageBatches(split, (0.5,), (0.25,), batch_size=BATCH, subset=1, shard=(1, 2))  # a trial's run trained nothing


def test_every_process_takes_an_equal_share_of_the_last_batch_and_augments_on_its_own():
    rng = np.random.default_rng(0)
    same = ImageSplit(np.repeat(rng.integers(0, 256, (1, 1, 8, 8), dtype=np.uint8), 37, axis=0), np.zeros(37, int))
    shards = [list(ImageBatches(same, (0.5,), (0.25,), batch_size=BATCH, seed=3, shard=(r, 2), augment="crop_flip"))
              for r in range(2)]
    assert [len(y) for _, y in shards[0]] == [len(y) for _, y in shards[1]] == [8, 8, 2]  # 37 = 16 + 16 + 5 -> 4
    first, second = (torch.cat([x for x, _ in shard]) for shard in shards)
    assert sum(torch.equal(a, b) for a, b in zip(first, second)) < len(first) // 2  # not the same crops and flips


@pytest.mark.parametrize("images, world_size", [(33, 2), (34, 2), (35, 4), (36, 4), (32, 2), (3, 2), (1, 1)])
def test_the_count_of_batches_is_what_an_epoch_yields(images, world_size):
    """A last batch of fewer images than the processes is cut to none: the steps a run announces and records
    (its progress bar's total, a warning of few steps) counted it."""
    split = ImageSplit(np.zeros((images, 1, 8, 8), dtype=np.uint8), np.zeros(images, int))
    for rank in range(world_size):
        batches = ImageBatches(split, (0.5,), (0.25,), batch_size=BATCH, seed=3, shard=(rank, world_size))
        assert len(batches) == len(list(batches))


def test_classify_runs_under_torchrun_and_only_rank_0_writes(tmp_path):  # digits ship with scikit-learn
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(WORLD_SIZE),
               "-m", "meta_neighborhoods", "classify", "--dataset", "digits", "--backbone", "convnet4", "--method",
               "mn", "--epochs", "2", "--batch-size", "32", "--train-subset", "400", "--device", "cpu", "--quiet",
               "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("test accuracy") == 1  # one report, from rank 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == WORLD_SIZE and len(metrics["history"]) == 2 and metrics["test_accuracy"] > 0.3
    assert checkpoint.load(out / "last")[1]["epoch"] == 2
    recorded = json.loads((out / "run.json").read_text())["provenance"]["command"]
    assert recorded == ["torchrun", "--nnodes=1", f"--nproc-per-node={WORLD_SIZE}", *command[command.index("-m", 3):]]


@pytest.mark.parametrize("argv, line", [
    (["--epochs", "x"], "meta-neighborhoods classify: error: argument --epochs: invalid int value: 'x'"),
    (["--resume", "{run}"], "meta-neighborhoods classify: error: {run}/config.json lacks dataset"),
], ids=["bad option", "refused folder"])
def test_an_error_every_rank_meets_is_said_once_under_torchrun(tmp_path, argv, line):
    """Each of torchrun's processes said it: the user read the same line once per process. Rank 0 says it now."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(WORLD_SIZE),
               "-m", "meta_neighborhoods", "classify", *[a.format(run=run) for a in argv]]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=120)
    said = done.stdout + done.stderr
    assert done.returncode != 0 and said.count("meta-neighborhoods classify:") == 1, said[-3000:]
    assert line.format(run=run) in said


@pytest.mark.parametrize("error", [None, ValueError])
def test_process_group_waits_for_every_rank_only_after_a_success(monkeypatch, error):
    """A one-process torchrun group: joined inside the block, left after it; a barrier only on success."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name, value in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                            MASTER_PORT=str(port)).items():
        monkeypatch.setenv(name, value)
    barriers = []
    monkeypatch.setattr(dist, "barrier", lambda: barriers.append(dist.get_world_size()))
    with pytest.raises(ValueError) if error else contextlib.nullcontext():
        with distributed.process_group(torch.device("cpu")) as device:
            assert device == torch.device("cpu") and distributed.is_active()
            if error:
                raise error("boom")
    assert not distributed.is_active() and barriers == ([] if error else [1])


def test_each_process_takes_the_gpu_of_its_local_rank_not_of_its_global_rank(monkeypatch):
    """Rank 5 of 8 on two nodes of four GPUs is the second process of its node: cuda:1. Its global rank names a
    GPU another process of the node holds, or none. (No GPU needed: torch's calls are recorded, not made.)"""
    for name, value in dict(RANK="5", LOCAL_RANK="1", WORLD_SIZE="8").items():
        monkeypatch.setenv(name, value)
    pinned, joined = [], []
    monkeypatch.setattr(torch.cuda, "set_device", pinned.append)
    monkeypatch.setattr(dist, "init_process_group", lambda *args, **kwargs: joined.append(args))
    monkeypatch.setattr(distributed, "_joined", False)  # setup sets it; restored after the test
    assert distributed.setup(torch.device("cuda")) == torch.device("cuda", 1)
    assert pinned == [torch.device("cuda", 1)] and joined == [("nccl",)]


def _mean_worker(rank, rendezvous, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    value = distributed.mean([1.0, 5.0][rank], [1, 3][rank])
    if rank == 0:
        checkpoint.save(out, {"mean": torch.tensor([value], dtype=torch.float64)}, {})
    distributed.teardown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # as gloo_processes: the interpreter's exit can abort in gloo's threads


def test_an_epoch_s_mean_loss_is_over_every_process_s_examples(tmp_path):
    import torch.multiprocessing as mp

    mp.start_processes(_mean_worker, args=(str(tmp_path / "rdv"), str(tmp_path / "out")), nprocs=2,
                       start_method="spawn")
    assert checkpoint.load(tmp_path / "out")[0]["mean"].item() == 1.5  # (1 + 5) / (1 + 3), not rank 0's 1 / 1
