"""The table a command of tables runs on (regress, ablate, fit): --dataset or --data-file with its CSV options,
checked and read, and the task of its target."""

from __future__ import annotations

import argparse
import logging
import re

import numpy as np

from ..config import CLASSIFICATION, ESTIMATOR, FOLDS, REGRESSION, SEEDS, TASKS
from ..datasets.csv_tables import DECIMALS, SEPARATORS, load_csv_table
from ..datasets.tables import TABLES, available_tables, load_table
from ..datasets.text_tables import NotInEncoding, NotNumeric
from ..validation import NONE, ConfigError, check_encoding
from .common import CSV_OPTIONS, READ_BY_DEFAULT, UsageError, add_threads, parent, path

LOGGER = logging.getLogger(__name__)
LABELS_AT_MOST = 10  # distinct integer values of a target that may be class labels


def table_source(allow_all: bool, folds: bool = True) -> argparse.ArgumentParser:
    """The table of regress, ablate and fit: --dataset NAME or --data-file PATH --target COLUMN, and its folds (not
    fit's: ``folds=False``)."""
    parser = parent()
    names = available_tables() + (["all"] if allow_all else [])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", choices=names, metavar="NAME",
                        help=f"registered table: {', '.join(names)}"
                             + (" (all = every regression table whose files are present)" if allow_all else ""))
    source.add_argument("--data-file", type=path, metavar="PATH",
                        help="any numeric CSV with a header row instead (comma-separated unless --separator says "
                             "otherwise; True/False read as 1/0, but in a target of class labels as written; its "
                             "file stem names the data set)")
    parser.add_argument("--target", metavar="COLUMN", help="target column of --data-file (a header name)")
    parser.add_argument("--encoding", metavar="NAME",
                        help="text encoding of --data-file, e.g. utf-16, latin-1, cp1252 (default utf-8, a byte-order "
                             "mark dropped; a run records it, and --config with its record reads the file so again)")
    parser.add_argument("--separator", choices=tuple(SEPARATORS),
                        help="what separates the fields of --data-file (default comma; a run records it, and --config "
                             "with its record reads the file so again)")
    parser.add_argument("--decimal", choices=tuple(DECIMALS),
                        help="what marks a number's fraction in --data-file (default point; comma with another "
                             "separator than the comma; a run records it)")
    parser.add_argument("--ignore-columns", nargs="+", metavar="COLUMN",
                        help=f"columns of --data-file to leave out, which may hold text (an identifier); a run "
                             f"records them ('{NONE}': none, over a record's)")
    parser.add_argument("--data-dir", type=path, metavar="PATH",
                        help="folder with the data files (default ../shared/data or $META_NEIGHBORHOODS_DATA; "
                             "gom defaults to the copy shipped with the package)")
    parser.add_argument("--table-sha256", metavar="HEX",
                        help="refuse a table whose numbers have another digest (a run records its table's, and "
                             "--config with its record reruns it on that table only; 'none' waives the check)")
    if folds:
        parser.add_argument("--folds", type=int, default=FOLDS,
                            help="cross-validation folds, the same for every method (default %(default)s)")
        parser.add_argument("--seeds", type=int, default=SEEDS,
                            help="repeats of the whole k-fold CV, each with its own fold shuffle and model seed "
                                 "(--seed, --seed + 1, ...; default %(default)s); errors and tests cover every repeat")
    parser.add_argument("--max-epochs", type=int, metavar="E",
                        help=f"cap on the training epochs of the MLP methods (default {ESTIMATOR.max_epochs}, the "
                             "estimator's)")
    parser.add_argument("--n-iter-no-change", type=int, metavar="E",
                        help=f"early stopping's patience: epochs without a better validation loss (default "
                             f"{ESTIMATOR.n_iter_no_change}, the estimator's; lower it with --max-epochs on a large "
                             "table)")
    parser.add_argument("--max-rows", type=int, metavar="N",
                        help="run on N rows drawn at random (with --seed) to bound the cost (default: all rows)")
    add_threads(parser, "Meta-Neighborhoods' training sums in an order that depends on them: a rerun matches a run "
                        "fold for fold only on as many (every run records the count it ran on, config.threads, and "
                        "--config reruns on as many)")
    return parser


def check_target(args) -> None:
    """--target, --encoding and --separator belong to --data-file and to nothing else, --data-dir to --dataset,
    --table-sha256 to one table: say so rather than ignore them; an unknown encoding is refused before any work. A
    digest a record gave (--config) does not bind --dataset all, nor does 'none' bind anything, nor a target column,
    encoding, separator or task a record gave another table."""
    gave = getattr(args, "config_gave", {})
    if args.data_file is None and "task" in gave and "dataset" not in gave:  # a record's, rerun on another table
        args.task = None  # that table's own
    for name in CSV_OPTIONS if args.data_file is None else ():
        if name in gave:
            setattr(args, name, None)  # a CSV run's record, rerun on a registered table the command line names
        elif getattr(args, name, None) is not None:
            raise UsageError(f"--{name.replace('_', '-')} only applies to --data-file")
    if args.data_file is not None and args.target is None:
        raise UsageError("--data-file needs --target COLUMN (the name of the target column in its header)")
    if args.data_file is not None and getattr(args, "data_dir", None) is not None:
        if "data_dir" not in gave:  # an options file's, for the registered tables it may also run, is left aside
            raise UsageError("--data-dir only applies to --dataset (the folder of the registered tables' files)")
        args.data_dir = None
    if args.data_file is not None:  # --encoding '' is refused, not read as UTF-8
        args.encoding = check_encoding("--encoding", "utf-8" if args.encoding is None else args.encoding)
    recorded = "table_sha256" in getattr(args, "config_gave", {})
    if args.table_sha256 is not None and (args.table_sha256.lower() == NONE or args.dataset == "all" and recorded):
        args.table_sha256 = None
    if args.table_sha256 is not None and args.dataset == "all":
        raise UsageError("--table-sha256 names one table's numbers, not those of --dataset all")
    if args.table_sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", args.table_sha256):
        raise ConfigError(f"--table-sha256 must be 64 hexadecimal digits or none, got {args.table_sha256!r:.80}",
                          "table_sha256")


def load_table_source(args):
    """The table named by --dataset, or the CSV of --data-file with its --target column (see check_target),
    refused unless its numbers have the digest --table-sha256 gives (a record's: the table it ran on)."""
    task = table_task(args)
    kind = None if args.data_file is not None else TABLES[args.dataset].task
    if kind not in (None, task):
        raise UsageError(f"{args.dataset} is a {kind} table: give --task {kind}, or no --task")
    try:
        if args.data_file is not None:
            ignore = getattr(args, "ignore_columns", None) or ()
            table = load_csv_table(args.data_file, args.target, args.encoding,
                                   args.separator or READ_BY_DEFAULT["separator"],
                                   () if list(ignore) == [NONE] else tuple(ignore), labels=task == CLASSIFICATION,
                                   decimal=getattr(args, "decimal", None) or READ_BY_DEFAULT["decimal"])
        else:
            table = load_table(args.dataset, args.data_dir)
    except NotInEncoding as error:
        if "encoding" not in getattr(args, "config_gave", {}):
            raise
        raise NotInEncoding(f"{error} (encoding {args.encoding!r} from {args.config_gave['encoding']}; --encoding "
                            "overrides it)") from None
    except ValueError as error:  # a target of class labels, perhaps; read as a record says, maybe another file's
        hint = _text_hint(error, args)
        gave = {name: path for name, path in getattr(args, "config_gave", {}).items()  # what may have misread it
                if name in ("separator", "decimal", "ignore_columns")
                and not (name == "decimal" and args.decimal == READ_BY_DEFAULT["decimal"])}
        if args.data_file is None or not (gave or hint):
            raise
        said = ", ".join(f"{name} {getattr(args, name)!r}" for name in gave)
        options = " and ".join("--" + name.replace("_", "-") for name in gave)
        override = "overrides it" if len(gave) == 1 else "override them"
        kind = ConfigError if isinstance(error, ConfigError) else ValueError  # a setting's error stays a usage error
        raise kind(f"{error}{hint}"
                   + (f" ({said} from {next(iter(gave.values()))}; {options} {override})" if gave else "")) from None
    if args.table_sha256 is not None and table.sha256() != args.table_sha256.lower():
        other = "other numbers or class names" if table.classes else "other numbers"
        raise ConfigError(f"{table.name} ({table.description}) is not the table of digest "
                          f"{args.table_sha256[:16]}... (--table-sha256, which a run records): {other}; "
                          "--table-sha256 none runs on them", "table_sha256")
    if args.data_file is not None and hasattr(args, "task") and args.task is None:
        _say_if_labels(table)
    return table


def _text_hint(error: ValueError, args) -> str:
    """What to do about a column of text in a --data-file: give the task, where it is the target and may hold class
    labels; else leave it out (a column named none cannot be: --ignore-columns none alone means no column)."""
    text = isinstance(error, NotNumeric) and error.column is not None and hasattr(args, "ignore_columns") \
        and "separated by" not in str(error) and "decimal comma" not in str(error)  # numbers, written otherwise
    if not text:
        return ""
    if error.column == args.target:
        return " (or, if it holds class labels, give --task classification)" if hasattr(args, "task") else ""
    if error.column == NONE:
        return " (or rename the column to leave it out: --ignore-columns none alone means no column)"
    return f" (or leave it out: --ignore-columns {error.column!r})"


def _say_if_labels(table) -> None:
    """Say where a --data-file's target, read as a regression's by default, looks like class labels: a few whole
    numbers (said, not refused: a rating such as wine quality is both); two as a warning, which --quiet shows too,
    since a regression of a yes/no target is seldom what was meant."""
    values = np.unique(table.y)
    if len(values) <= LABELS_AT_MOST and np.array_equal(values, np.round(values)):
        booleans = " (0 and 1, as True and False are read)" if values.tolist() == [0, 1] else ""
        LOGGER.log(logging.WARNING if len(values) == 2 else logging.INFO, "%s: the target holds %d distinct whole "
                   "numbers%s, read as a regression's target; if they are class labels, give --task classification",
                   table.name, len(values), booleans)


def task(help: str) -> argparse.ArgumentParser:
    """--task of regress and fit: a table's target as a regression's, or as class labels (not given: the registered
    table's task, a --data-file's regression; ``table_task``)."""
    parser = parent()
    parser.add_argument("--task", choices=TASKS, help=help)
    return parser


def table_task(args) -> str:
    """The task of a command's table: --task where given, else the registered table's, else regression."""
    if getattr(args, "task", None) is not None:
        return args.task
    return TABLES[args.dataset].task if args.data_file is None and args.dataset in TABLES else REGRESSION
