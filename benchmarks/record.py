"""The one way a benchmark script writes its results beside what produced them (``provenance()``: the commit and
whether the clone had uncommitted changes, the command line, versions, threads), so that no result file needs a
hand-written header: ``--out PATH`` gets the text the script printed under a header of that record, ``--json PATH``
the script's figures with the same record under "provenance".

    with Record(args.json, args.out) as record:  # either may be None
        ...  # measure and print
        record.figures = {...}  # what --json writes
"""

from __future__ import annotations

import contextlib
import io
import shlex
import sys


def add_options(parser, json_help: str = "also write the figures here, with what produced them") -> None:
    """``--json`` and ``--out``, the same in every script."""
    parser.add_argument("--json", metavar="PATH", help=json_help)
    parser.add_argument("--out", metavar="PATH",
                        help="also write the printed text here, under a header of what produced it")


def measure(parser, report) -> None:
    """A script's ``main`` where it measures in this process: its options with ``--json`` and ``--out``, its
    ``--threads`` set, then ``report(args)`` (which measures, prints and returns the figures) under one ``Record``."""
    import torch  # here: a script that only launches children needs no torch in this module

    add_options(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with Record(args.json, args.out) as record:
        record.figures = report(args)


def header(record: dict) -> str:
    """The comment lines a text result starts with: the commit, the command, the versions and threads."""
    dirty = {True: "uncommitted changes", False: "no uncommitted changes", None: "not a git clone"}[record["git_dirty"]]
    return (f"# commit {record['git_commit']} ({dirty}), meta_neighborhoods {record['meta_neighborhoods']}, "
            f"{record['time']}\n"
            f"# command: {shlex.join(record['command'])}  (in {record['working_directory']})\n"
            f"# torch {record['torch']}, python {record['python']}, numpy {record['numpy']}, "
            f"{record['threads']} thread(s), GPU {record['gpu']}, {record['platform']}\n")


class _Tee(io.TextIOBase):
    """A stream that writes to the console and keeps a copy."""

    def __init__(self, console, copy: io.StringIO):
        self.console, self.copy = console, copy

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.console.write(text)

    def flush(self) -> None:
        self.console.flush()


class Record:
    """Around a script's measuring and printing: keeps what it prints and, if it ends without an error, writes
    ``--out`` and ``--json`` (``figures``; none written while it is None) with one ``provenance()``, taken on entry
    (after the script has set its threads). ``overrides`` replace entries of that record: a script whose children
    measure records their threads, not its own."""

    def __init__(self, json: str | None, out: str | None, **overrides):
        self.json, self.out, self.overrides = json, out, overrides
        self.figures: dict | None = None
        self.provenance: dict | None = None
        self._text = io.StringIO()
        self._redirect = contextlib.redirect_stdout(_Tee(sys.stdout, self._text))

    def __enter__(self) -> Record:
        if self.json or self.out:
            from meta_neighborhoods.provenance import provenance  # here: a script's parent may need no torch else

            self.provenance = {**provenance(), **self.overrides}
        self._redirect.__enter__()
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self._redirect.__exit__(kind, error, traceback)
        if kind is not None or self.provenance is None:
            return
        from meta_neighborhoods.io import write_json, write_text

        if self.json and self.figures is not None:
            write_json(self.json, {**self.figures, "provenance": self.provenance})
        if self.out:
            write_text(self.out, header(self.provenance) + self._text.getvalue())
