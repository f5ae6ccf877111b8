"""``meta-neighborhoods regress``: the regression tables of Table 2, for one table or every one present."""

from __future__ import annotations

from pathlib import Path

from ..datasets.tables import available_tables
from .common import check_target, fit_options, load_table_source, run_options, table_source


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "regress", help="regression tables of Table 2: kNN, vanilla MLP, Meta-Neighborhoods, gradient boosting",
        parents=[*run_options(), table_source(allow_all=True)],
        description="k-fold MSE on the standardised target for kNN (k by inner CV), the vanilla MLP, "
                    "Meta-Neighborhoods (estimator defaults) and HistGradientBoosting, with paired t-tests of "
                    "Meta-Neighborhoods against each; writes results.json, results.md and folds.png "
                    "(with --dataset all: one folder per data set, summary.md and summary.json).",
    )
    parser.add_argument("--search", action="store_true",
                        help="choose the MLP architecture per fold (2-5 layers x 32-256 units, inner 80/20 split) "
                             "for vanilla, and use it for Meta-Neighborhoods too")
    parser.set_defaults(run=run)


def run(args) -> int:
    check_target(args)  # before the imports: a usage error needs no torch
    from ..experiments.regression import run_regression, run_regression_all

    options = {**fit_options(args), "search": args.search}
    if args.dataset == "all":
        run_regression_all(available_tables(), args.out, data_dir=args.data_dir, **options)
        print((Path(args.out) / "summary.md").read_text(), end="")
    else:
        run_regression(load_table_source(args), args.out, **options)
        print((Path(args.out) / "results.md").read_text(), end="")
    return 0
