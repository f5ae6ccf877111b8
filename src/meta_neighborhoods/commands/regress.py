"""``meta-neighborhoods regress``: the regression tables of Table 2, for one table or every one present."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import CLASSIFICATION, OPTIONAL_METHOD_NAMES, REGRESSION, TABLE_METHOD_NAMES
from ..datasets.tables import available_tables
from ..run_files import FOLDS_PNG, RESULTS_JSON, RESULTS_MD, SUMMARY_JSON, SUMMARY_MD
from ..validation import ConfigError
from .common import UsageError, estimator_options, fit_options, run_options, table_run_options, vanilla_fallback
from .table_source import check_target, load_table_source, table_source, table_task, task

LOGGER = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "regress", help=f"cross-validate {', '.join(TABLE_METHOD_NAMES.values())} on a table: Table 2, or a "
                        "classification table's error rate",
        parents=[*run_options(), table_source(allow_all=True), estimator_options(), vanilla_fallback(),
                 task("regression (the MSE on the standardised target) or classification (the error rate, on folds "
                      "stratified by class; the target column holds class labels, integers or text) of the target "
                      "column (default: a registered table's task, else regression)")],
        description=f"Repeated k-fold MSE on the standardised target for {', '.join(TABLE_METHOD_NAMES.values())} "
                    f"and, where installed, {' and '.join(OPTIONAL_METHOD_NAMES.values())}, with t-tests of "
                    "Meta-Neighborhoods against each (on a classification table, or with --task classification: "
                    "the error rate of their classifiers); writes results.json, results.md and folds.png "
                    "(with --dataset all: one folder per data set, summary.md and summary.json).",
    )
    parser.add_argument("--search", action="store_true",
                        help="choose the MLP architecture per fold (2-5 layers x 32-256 units, inner 80/20 split; "
                             "by MSE, or by error rate and then log-loss) for vanilla, and use it for "
                             "Meta-Neighborhoods too")
    parser.set_defaults(run=run)


def run(args) -> int:
    check_target(args)  # before the imports: a usage error needs no torch
    if args.search and args.hidden_layer_sizes is not None:
        raise UsageError("--search chooses the hidden layers per fold; drop --hidden-layer-sizes")
    from ..experiments.table_runs import run_table, run_tables

    options = {**fit_options(args), "search": args.search}
    if args.dataset == "all" and table_task(args) != REGRESSION:
        raise UsageError("--dataset all runs the regression tables: give --task classification one table, "
                         f"{' or '.join(available_tables(CLASSIFICATION))}, or a --data-file")
    if args.dataset == "all":
        run_tables(available_tables(REGRESSION), args.out, data_dir=args.data_dir, **options)
        written = (SUMMARY_MD, f"{SUMMARY_JSON} and a folder per data set")
    else:
        run_table(load_table_source(args), args.out, **options, task=table_task(args))
        written = (RESULTS_MD, f"{RESULTS_JSON}, {FOLDS_PNG}")
    print((Path(args.out) / written[0]).read_text(), end="")
    LOGGER.info("wrote %s/%s, %s", args.out, *written)
    return 0


RECORDS = (RESULTS_JSON, SUMMARY_JSON)  # what options_from_record reads


def options_from_record(record: dict) -> dict:
    """The options of the regress run whose results.json ``record`` is, for --config; a summary.json reruns
    --dataset all (each table then checks its own digest no more: the tables' records hold them)."""
    if "param" in record or "training" in record:
        raise ConfigError(f"the {'ablation.json of an ablate run' if 'param' in record else 'fit.json of a fit'}, "
                          "not the results.json of a regress run")
    if "datasets" in record:
        return {**table_run_options(record), "dataset": "all"}
    return table_run_options(record)
