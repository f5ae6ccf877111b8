"""How torchrun launched this process, read from the environment it sets: without importing torch, so that the
command line can say an error, or leave after Ctrl-C, even where torch's import was cut short."""

from __future__ import annotations

import os

TORCHRUN = ("RANK", "LOCAL_RANK", "WORLD_SIZE")  # what torchrun sets for every process it starts


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN)


def torchrun_rank() -> int:
    """This process's rank among torchrun's, 0 outside torchrun (a ``RANK`` of the shell's alone is not torchrun's)."""
    rank = os.environ.get("RANK", "")
    return int(rank) if launched_by_torchrun() and rank.isdigit() else 0
