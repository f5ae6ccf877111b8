"""How this process was launched: by torchrun, read from the environment it sets, and with which arguments,
where a program called the command line (``cli.main(argv)``). Without importing torch, so that the command line can
say an error, or leave after Ctrl-C, even where torch's import was cut short."""

from __future__ import annotations

import os
from contextlib import contextmanager
from contextvars import ContextVar

TORCHRUN = ("RANK", "LOCAL_RANK", "WORLD_SIZE")  # what torchrun sets for every process it starts
_ARGUMENTS: ContextVar[tuple[str, ...] | None] = ContextVar("arguments", default=None)


@contextmanager
def called_with(argv):
    """While ``cli.main`` runs the arguments ``argv`` a program gave it: those, not ``sys.argv`` (the program's
    own command line), are what the run's records call its command."""
    token = _ARGUMENTS.set(tuple(argv))
    try:
        yield
    finally:
        _ARGUMENTS.reset(token)


def called_arguments() -> tuple[str, ...] | None:
    """The arguments a program gave ``cli.main``, or None where the command line is this process's own."""
    return _ARGUMENTS.get()


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN)


def torchrun_rank() -> int:
    """This process's rank among torchrun's, 0 outside torchrun (a ``RANK`` of the shell's alone is not torchrun's)."""
    rank = os.environ.get("RANK", "")
    return int(rank) if launched_by_torchrun() and rank.isdigit() else 0
