"""Signals held while a step must finish whole (a checkpoint's commit, a run's files moving into place), and
handlers set for a block: SIGTERM taken as Ctrl-C (``cli``)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager


@contextmanager
def deferred_signals(signals=(signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Ctrl-C and SIGTERM arriving in the block delivered when it ends. A handler, not a signal mask: the mask is
    per thread, and torch's threads would take the signal."""
    caught = []
    try:
        with signals_handled(lambda received, frame: caught.append(received), signals):
            yield
    finally:
        if caught:
            signal.raise_signal(caught[0])


@contextmanager
def signals_handled(handler: Callable, signals: Iterable[int]) -> Iterator[None]:
    """``handler`` for ``signals`` in the block, the handlers before it restored after it. Only the main thread can
    set handlers; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, handler) for number in signals}
    try:
        yield
    finally:
        for number, before in previous.items():  # None: a handler not set from Python, which the default stands for
            signal.signal(number, signal.SIG_DFL if before is None else before)
