"""``python -m meta_neighborhoods``, and the console command ``meta-neighborhoods`` (``console``): the command line
is imported inside a guard, so that Ctrl-C while its modules load (about a fifth of a second) is said in one line
with status 130, as later, not as Python's traceback."""

import sys


def console() -> None:
    try:
        from .cli import entry
    except KeyboardInterrupt:
        print("meta-neighborhoods: interrupted", file=sys.stderr)
        sys.exit(130)
    entry()


if __name__ == "__main__":
    console()
