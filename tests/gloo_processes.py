"""Training in several fresh processes over gloo, for the tests that compare a parallel run with a single one."""

import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from meta_neighborhoods import checkpoint, distributed


def train_in_processes(train: Callable[[tuple[int, int]], nn.Module], world_size: int, tmp_path: Path) -> dict:
    """Run ``train(shard)`` in ``world_size`` spawned processes and return the first one's state dict, so that
    neither run depends on this test process's torch settings. ``train`` must be a module-level function."""
    out = tmp_path / f"world{world_size}"
    mp.start_processes(_worker, args=(train, world_size, str(tmp_path / f"rendezvous{world_size}"), str(out)),
                       nprocs=world_size, start_method="spawn")
    return checkpoint.load(out)[0]


def _worker(rank: int, train, world_size: int, rendezvous: str, out: str) -> None:
    """One process of the run (one thread each, so that every run sums in the same order)."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)
    model = train((distributed.rank(), distributed.world_size()))
    if distributed.is_main():
        checkpoint.save(out, model.state_dict(), {})
    distributed.teardown()
    # Leave without the interpreter's finalisation: once in about a hundred runs gloo's worker threads aborted a rank
    # there ("terminate called without an active exception", pytorch/pytorch#179291), after every result was written.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
