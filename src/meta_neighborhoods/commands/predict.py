"""``meta-neighborhoods predict``: a saved estimator's predictions for the rows of a CSV file."""

from __future__ import annotations

import logging

from ..config import DEVICES
from ..datasets.csv_tables import DECIMALS, SEPARATORS
from ..validation import check_encoding
from .common import READ_BY_DEFAULT, path, verbosity

LOGGER = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict", help="a saved estimator's predictions for the rows of a CSV file",
        parents=[verbosity("warnings and errors only")],
        description="Predict the rows of a CSV file with a header row by an estimator that `meta-neighborhoods fit` "
                    "or the estimators' save() wrote, and write them to --out as CSV, one line per row in the file's "
                    "order: a column 'prediction' (prediction_0, ... for several targets) and, with "
                    "--probabilities, a classifier's probability_<class> columns, after the columns --keep-columns "
                    "copies as written. The model's feature columns are found by name, in any order; other columns "
                    "are left out (a model saved without names takes every column but --target and those kept, in "
                    "order). With --target, that column is scored on the rows that hold a value (every row is "
                    "predicted): mean squared error in its own units, or accuracy. --out is written in UTF-8.",
    )
    parser.add_argument("--model", type=path, required=True, metavar="PATH",
                        help="the --out folder of a fit, or a checkpoint as save() was given it (model or model.json)")
    parser.add_argument("--data-file", type=path, required=True, metavar="PATH", help="CSV file of the rows to predict")
    parser.add_argument("--out", type=path, required=True, metavar="FILE", help="CSV file to write the predictions to")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--target", metavar="COLUMN", help="a column of true values to score the predictions by")
    parser.add_argument("--probabilities", action="store_true", help="a classifier's probability of each class too")
    parser.add_argument("--keep-columns", nargs="+", default=(), metavar="COLUMN",
                        help="columns of --data-file to copy into --out as written, before the predictions (an "
                             "identifier to match rows by)")
    parser.add_argument("--encoding", default=READ_BY_DEFAULT["encoding"], metavar="NAME",
                        help="text encoding of --data-file (default %(default)s, a byte-order mark dropped)")
    parser.add_argument("--separator", choices=tuple(SEPARATORS), default=READ_BY_DEFAULT["separator"],
                        help="what separates the fields of --data-file, and of --out (default %(default)s)")
    parser.add_argument("--decimal", choices=tuple(DECIMALS), default=READ_BY_DEFAULT["decimal"],
                        help="what marks a number's fraction in --data-file, and in --out (default %(default)s; comma "
                             "with another separator than the comma)")
    parser.add_argument("--device", choices=DEVICES, default="cpu",
                        help="where to predict (default %(default)s): cpu, cuda (refused where there is none), or "
                             "auto: CUDA where there is one, else the CPU")
    parser.set_defaults(run=run)


def run(args) -> int:
    encoding = check_encoding("--encoding", args.encoding)  # before the imports: a usage error needs no torch
    from ..experiments.final_model import predict_file

    done = predict_file(args.model, args.data_file, args.out, encoding=encoding, separator=args.separator,
                        target=args.target, probabilities=args.probabilities, keep=tuple(args.keep_columns),
                        device=args.device, overwrite=args.overwrite, decimal=args.decimal)
    rows = "" if done["scored"] == done["rows"] else f" on the {done['scored']} rows that hold one"
    scored = "" if done["score"] is None else \
        f"; {done['metric']} against --target {args.target}{rows}: {done['score']:.6g}"
    print(f"{args.out}: {done['rows']} prediction{'s' * (done['rows'] != 1)} of the {done['estimator']} of "
          f"{args.model}{scored}")
    return 0
