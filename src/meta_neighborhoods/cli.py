"""The command line: ``meta-neighborhoods <experiment> ...`` (also ``python -m meta_neighborhoods``).

Each command lives in ``commands/<name>.py``; this module only assembles the parser (with ``--config FILE`` for
every command, read by ``commands/config_file.py``), sets the level of the package's messages on stderr (INFO;
WARNING with ``--quiet``, DEBUG with ``-v``) and turns errors into one line on stderr and an exit status: 2 for a
usage error (argparse's own, ``UsageError``, ``ConfigError``), 1 for a failure at run time, 130 when interrupted.
The results a command exists for (its tables, its accuracy line) go to stdout.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from contextlib import contextmanager

from . import __version__
from .commands import COMMANDS, config_file
from .commands.common import UsageError, check_data_dir
from .validation import Bounded, ConfigError

RUNTIME_ERRORS = (ValueError, OSError, RuntimeError, FloatingPointError, MemoryError)
LOGGER = logging.getLogger("meta_neighborhoods")  # the package's loggers are its children
OPTION = Bounded(maxstring=300, maxlist=20)  # an option as the debug line shows it: a file's may be huge


class _Parser(argparse.ArgumentParser):
    """Errors in one line, ``prog: error: message`` (status 2), as every other error of the command line; --help
    gives the usage. Each command's parser is one too (argparse builds them of the main parser's class)."""

    def error(self, message: str):
        message = message if len(message) <= 300 else message[:300] + "..."  # it quotes the value, however long
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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
    if "torch.distributed" in sys.modules:  # never imported: no group was joined, and --help stays light
        from .distributed import launched_by_torchrun

        if launched_by_torchrun():
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, commands = _build()
    name = next((token for token in argv if not token.startswith("-")), None)  # the command, if any
    prefix = f"meta-neighborhoods {name}"
    try:
        args = config_file.parse(parser, argv, commands.get(name), _record_reader(name))
    except ConfigError as error:  # the --config file
        print(f"{prefix}: error: {error}", file=sys.stderr)
        return 2
    with _messages(prefix, args):
        LOGGER.debug("options: %s", ", ".join(f"{key}={OPTION.repr(value)}" for key, value
                                              in sorted(vars(args).items()) if not callable(value)))
        try:
            check_data_dir(getattr(args, "data_dir", None))  # every command that reads data: before any work
            return args.run(args)
        except KeyboardInterrupt as interrupt:  # a command may say how to continue (classify: the --resume command)
            print(f"{prefix}: interrupted" + (f"; {interrupt}" if str(interrupt) else ""), file=sys.stderr)
            return 130
        except ConfigError as error:  # first: it is a ValueError too
            print(f"{prefix}: error: {config_file.source(error, args)}{error}", file=sys.stderr)
            return 2
        except UsageError as error:
            print(f"{prefix}: error: {error}", file=sys.stderr)
            return 2
        except RUNTIME_ERRORS as error:  # a bare MemoryError says nothing: its name then
            print(f"{prefix}: error: {str(error) or type(error).__name__}", file=sys.stderr)
            return 1


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
    as it was found (main may run more than once in a process)."""
    handler, level = logging.StreamHandler(sys.stderr), LOGGER.level
    handler.setFormatter(_Lines(prefix))
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
    try:
        yield
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(level)


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
