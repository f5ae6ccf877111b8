"""Multi-process training under PyTorch's own launcher, ``torchrun``: one process per device.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE (and the rendezvous variables) for every process; ``setup``
joins the process group (NCCL on GPUs, gloo on CPUs) and pins the process to its device. Every rank trains
on its own slice of each global batch, DistributedDataParallel averages the gradients, and only rank 0
logs, shows progress and writes files. Outside torchrun every function here is a no-op for one process.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.distributed as dist

from .launch import launched_by_torchrun


_joined = False  # set once this process joins a group (setup), and never unset


def is_active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank; torchrun's RANK before the process group is joined and after it is left."""
    return dist.get_rank() if is_active() else int(os.environ.get("RANK", 0))


def world_size() -> int:
    return dist.get_world_size() if is_active() else int(os.environ.get("WORLD_SIZE", 1))


def is_main() -> bool:
    """Rank 0: the one process that logs, shows progress bars and writes metrics and checkpoints."""
    return rank() == 0


def setup(device: torch.device) -> torch.device:
    """Join torchrun's process group if launched by it; returns this process's device."""
    if not launched_by_torchrun():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    if not is_active():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    global _joined
    _joined = True
    return device


def lost_peer(error: BaseException) -> str | None:
    """What a collective said where ``error`` is its failure because another process of the group stopped (its
    first sentence, without gloo's source location: 'Connection closed by peer [127.0.0.1]:31431'); else None."""
    text = str(error)
    if "by peer" not in text:  # gloo's 'closed by peer', 'reset by peer'; not this rank's own backend error
        return None
    return re.sub(r"^\[[^\]]*\]\s*", "", text).split(". ")[0]


def joined() -> bool:
    """Whether this process has joined torchrun's group (it may have left it since). Until then it has read only the
    command line and the files it names, as the other ranks have: an error then is most likely theirs too, which the
    command line says once; after, it may be this rank's own (its device, a peer lost)."""
    return _joined


def teardown(wait: bool = True) -> None:
    """Leave the process group; with ``wait``, only once every rank is done.

    A rank that leaves while a peer is still busy (rank 0 writing its files, say) closes connections
    the peer's gloo threads still hold, which can abort that peer at exit. After an error a rank leaves
    at once instead: its peers may be inside a collective that a barrier would be mistaken for.
    """
    if is_active():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


@contextmanager
def process_group(device: torch.device) -> Iterator[torch.device]:
    """``setup`` for the block, yielding this process's device, and ``teardown`` after it (waiting only on success)."""
    device = setup(device)
    try:
        yield device
    except BaseException:
        teardown(wait=False)  # torchrun stops the peers once this process exits with the error
        raise
    teardown()


def mean(total: float, count: int) -> float:
    """``total / count`` summed over every rank (the epoch's mean loss over all processes' examples)."""
    if not is_active():
        return total / count
    sums = torch.tensor([total, float(count)], dtype=torch.float64)
    dist.all_reduce(sums)
    return (sums[0] / sums[1]).item()


def average(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each tensor's mean over every rank, differentiable: the backward pass sends every rank's gradient back to each
    rank's own tensors (one collective for all of them). The tensors themselves outside torchrun."""
    if not is_active():
        return tensors
    total = _Summed.apply(torch.cat([t.flatten() for t in tensors])) / world_size()
    return [part.view_as(t) for part, t in zip(total.split([t.numel() for t in tensors]), tensors)]


class _Summed(torch.autograd.Function):
    """A tensor's sum over every rank, differentiable (to any order) as ``dist.all_reduce`` is not: each rank's
    gradient of the sum goes back, summed, to every rank's tensor. torch's own
    (``torch.distributed.nn.functional.all_reduce``) is deprecated for a private module."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> torch.Tensor:
        return _Summed.apply(gradient)
