"""The command line: ``meta-neighborhoods <experiment> ...`` (also ``python -m meta_neighborhoods``).

Each command lives in ``commands/<name>.py``; this module only assembles the parser (with ``--config FILE`` for
every command, read by ``commands/config_file.py``), sets the level of the package's messages on stderr, Python's
warnings among them (INFO; WARNING with ``--quiet``, DEBUG with ``-v``) and turns errors into one line on stderr and
an exit status: 2 for a usage error (argparse's own, ``UsageError``, ``ConfigError``), 1 for a failure at run time,
130 when interrupted (143 for SIGTERM, which interrupts a command as Ctrl-C does); under torchrun the line is said
once, not once per process (``_failed``).
The results a command exists for (its tables, its accuracy line) go to stdout.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import re
import signal
import sys
import time
import unicodedata
import warnings
from contextlib import contextmanager, nullcontext

from . import __version__
from .launch import called_with, launched_by_torchrun, torchrun_rank
from .commands import COMMANDS, config_file
from .commands.common import ESTIMATOR_OPTIONS, UsageError, check_data_dir
from .io import RunFolderError
from .signals import signals_handled
from .validation import Bounded, ConfigError

RUNTIME_ERRORS = (ValueError, OSError, RuntimeError, FloatingPointError, MemoryError)
LOGGER = logging.getLogger("meta_neighborhoods")  # the package's loggers are its children
OPTION = Bounded(maxstring=300, maxlist=20)  # an option as the debug line shows it: a file's may be huge
HOLD = 5.0  # seconds a rank other than 0 holds an error line that rank 0 most likely says (torchrun stops it sooner)
BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")  # direction marks
LONGEST = 2000  # characters of an error line: beyond, said as cut (a list of a wide file's columns)


class _Parser(argparse.ArgumentParser):
    """Errors in one line, ``prog: error: message`` (status 2), as every other error of the command line; --help
    gives the usage. Each command's parser is one too (argparse builds them of the main parser's class)."""

    def error(self, message: str):
        message = message if len(message) <= 300 else message[:300] + "..."  # it quotes the value, however long
        self.exit(_failed(self.prog, f"error: {message} (see {self.prog} --help)", 2))


def build_parser() -> argparse.ArgumentParser:
    return _build()[0]


def _build() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser and each command's own parser, by name."""
    parser = _Parser(
        prog="meta-neighborhoods",
        description="Meta-Neighborhoods (Shan, Li, Oliva, NeurIPS 2020): experiments from the paper.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    for name, command_parser in subparsers.choices.items():
        config_file.add_option(command_parser, records=_records(name))
    return parser, subparsers.choices


def entry() -> None:
    """The console command: ``main``'s code as the exit status. A process that joined torchrun's group leaves without
    the interpreter's finalisation once its files are written and its streams flushed: gloo's worker threads can abort
    a finished rank there ("terminate called without an active exception", pytorch/pytorch#179291), which torchrun
    reports as a failed run (the test helpers leave their processes so too)."""
    code = main()
    if "torch.distributed" in sys.modules and launched_by_torchrun():  # else no group was joined
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (None: this process's own) and return its exit status."""
    if argv is None:
        return _main(sys.argv[1:])
    argv = list(argv)
    with called_with(argv):  # what the run's records call its command
        return _main(argv)


def _main(argv: list[str]) -> int:
    parser, commands = _build()
    name = next((token for token in argv if not token.startswith("-")), None)  # the command, if any
    prefix = f"meta-neighborhoods {name}"
    try:
        args = config_file.parse(parser, argv, commands.get(name), _record_reader(name))
    except ConfigError as error:  # the --config file
        return _failed(prefix, f"error: {error}", 2)
    with _messages(prefix, args):
        LOGGER.debug("options: %s", ", ".join(f"{key}={OPTION.repr(value)}" for key, value
                                              in sorted(vars(args).items()) if not callable(value)))
        try:
            check_data_dir(getattr(args, "data_dir", None))  # every command that reads data: before any work
            import numpy.random  # noqa: F401  numpy imports it at first use, and an interrupt within that is lost
            with _terminated_as_interrupt():
                return args.run(args)
        except KeyboardInterrupt as interrupt:  # a command may say how to continue (classify: the --resume command)
            said, status = ("terminated", 143) if isinstance(interrupt, Terminated) else ("interrupted", 130)
            return _failed(prefix, said + (f"; {interrupt}" if str(interrupt) else ""), status)
        except ConfigError as error:  # first: it is a ValueError too
            return _failed(prefix, f"error: {config_file.source(error, args)}{error}", 2)
        except UsageError as error:
            return _failed(prefix, f"error: {error}", 2)
        except RUNTIME_ERRORS as error:  # a bare MemoryError says nothing: its name then
            return _failed(prefix, f"error: {str(error) or type(error).__name__}", 1, _met_alike(error))


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a job scheduler's stop) as Ctrl-C: raised where the command is, so that its run cleans up
    (its stage, its lock, a folder it made for nothing) and says so; SIGTERM's default ended the process on the spot."""


def _terminated_as_interrupt():
    """A block where SIGTERM raises ``Terminated``; not under torchrun, whose agent stops its ranks with it (a rank
    waiting in a collective would take it only when the wait ends)."""
    return nullcontext() if launched_by_torchrun() else signals_handled(_terminate, (signal.SIGTERM,))


def _terminate(received, frame):
    raise Terminated


def _failed(prefix: str, message: str, status: int, alike: bool = False) -> int:
    """Say ``prefix: message`` on stderr, once under torchrun rather than once per rank, and return ``status``.

    Rank 0 says it. Another rank never says an interrupt: Ctrl-C reaches every rank, and rank 0 says how to go on.
    An error that every rank most likely meets alike, a usage error (status 2: one command line, one set of settings),
    one met ``alike`` (a run folder or checkpoint the ranks read alike, a loss gone NaN) or any error before the rank
    joined the process group (the same files read), it holds for HOLD seconds: rank 0 says it meanwhile and exits,
    and torchrun stops the others. Any other error (the rank's device, a peer lost), and one still held after HOLD
    (then the rank's own), it says after its rank: ``prefix: rank 1: message``."""
    rank = torchrun_rank()
    if rank != 0:
        if status == 130:
            return status
        if status == 2 or alike or not _joined():
            try:
                time.sleep(HOLD)
            except KeyboardInterrupt:  # Ctrl-C meanwhile: it reached rank 0 too, which says so
                return status
        prefix = f"{prefix}: rank {rank}"
    print(f"{prefix}: {_one_line(message)}", file=sys.stderr)
    return status


def _one_line(message: str) -> str:
    """``message`` with line breaks and control characters escaped, and cut at LONGEST characters: names read from
    untrusted files (a fitted attribute, a column, a tensor) cannot break its one line, nor colour or move the
    terminal, nor list twenty thousand columns."""
    text = "".join(repr(c)[1:-1] if unicodedata.category(c) in ("Cc", "Zl", "Zp") or c in BIDI else c for c in message)
    return text if len(text) <= LONGEST else f"{text[:LONGEST]}... ({len(text) - LONGEST:,} more characters)"


def _met_alike(error: BaseException) -> bool:
    """Whether every rank most likely meets ``error`` alike: one of a run folder or checkpoint, which they read alike
    (checkpoint.py, which imports torch, is loaded where one was raised), or a training loss gone NaN, of weights
    that every step averages over the ranks."""
    checkpoint = sys.modules.get(f"{__package__}.checkpoint")
    return isinstance(error, (RunFolderError, FloatingPointError)) or checkpoint is not None and isinstance(
        error, checkpoint.CheckpointError)


def _joined() -> bool:
    """Whether this process joined torchrun's group; never, where no command imported torch.distributed."""
    if "torch.distributed" not in sys.modules:
        return False
    from .distributed import joined

    return joined()


def _command(name: str | None):
    return next((command for command in COMMANDS if command.__name__.rsplit(".", 1)[-1] == name), None)


def _record_reader(name: str | None):
    """The command's ``options_from_record``: how ``--config`` reads the record of its runs (None: it has none)."""
    return getattr(_command(name), "options_from_record", None)


def _records(name: str) -> tuple[str, ...]:
    """The files of its runs that the command's ``--config`` reads (``RECORDS`` beside ``options_from_record``)."""
    return getattr(_command(name), "RECORDS", ())


@contextmanager
def _messages(prefix: str, args):
    """The package's messages on stderr at the level --quiet / -v chose, while the command runs; the logger is left
    as it was found (main may run more than once in a process). Under torchrun rank 0 alone says them: every rank
    meets the same options, warnings and progress (errors are ``_failed``'s)."""
    handler, level, shown = logging.StreamHandler(sys.stderr), LOGGER.level, warnings.showwarning
    handler.setFormatter(_Lines(prefix))
    if torchrun_rank() != 0:
        handler.addFilter(lambda record: False)
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
    warnings.showwarning = functools.partial(_warning_line, options=[name for name in ESTIMATOR_OPTIONS
                                                                     if name in vars(args)])
    try:
        yield
    finally:
        warnings.showwarning = shown
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(level)


def _warning_line(message, category, filename, lineno, file=None, line=None, *, options=()) -> None:
    """A Python warning the command meets (the estimators', scikit-learn's), said as one of its own warning lines:
    ``meta-neighborhoods <command>: warning: ...``, not ``<frozen runpy>:88: UserWarning: ...`` and its source
    (a caller of ``main`` that records warnings, ``catch_warnings(record=True)``, sees these lines instead). The
    parameters an estimator's ConvergenceWarning names that the command has ``options`` for are named as those
    (``--max-epochs 3``); no other text is touched, for it may hold a column or class of that name."""
    text = str(message)
    if options and category.__name__ == "ConvergenceWarning":  # by name: the command line imports no sklearn
        text = re.sub(rf"\b({'|'.join(options)})\b(=?)", lambda m: f"--{m[1].replace('_', '-')}{' ' * bool(m[2])}",
                      text)
    LOGGER.warning("%s", text)


class _Lines(logging.Formatter):
    """``meta-neighborhoods <command>: [level: ]message``, the form of the error lines; INFO names no level."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return f"{self.prefix}: {level}{super().format(record)}"


if __name__ == "__main__":
    sys.exit(main())
