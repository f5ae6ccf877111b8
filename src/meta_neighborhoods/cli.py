"""The command line: ``meta-neighborhoods <experiment> ...`` (also ``python -m meta_neighborhoods``).

Each command lives in ``commands/<name>.py``; this module only assembles the parser and turns errors into
one line on stderr and an exit status: 2 for a usage error (argparse's own, ``UsageError``, ``ConfigError``),
1 for a failure at run time, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .commands import COMMANDS
from .commands.common import UsageError
from .validation import ConfigError

RUNTIME_ERRORS = (ValueError, OSError, RuntimeError, FloatingPointError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meta-neighborhoods",
        description="Meta-Neighborhoods (Shan, Li, Oliva, NeurIPS 2020): experiments from the paper.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prefix = f"meta-neighborhoods {args.command}"
    try:
        return args.run(args)
    except KeyboardInterrupt as interrupt:  # a command may say how to continue (classify: the --resume command)
        print(f"{prefix}: interrupted" + (f"; {interrupt}" if str(interrupt) else ""), file=sys.stderr)
        return 130
    except (UsageError, ConfigError) as error:  # ConfigError first: it is a ValueError too
        print(f"{prefix}: error: {error}", file=sys.stderr)
        return 2
    except RUNTIME_ERRORS as error:
        print(f"{prefix}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
