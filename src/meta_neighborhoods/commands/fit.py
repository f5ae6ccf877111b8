"""``meta-neighborhoods fit``: one estimator fit on a whole table and saved, to predict with (``predict``)."""

from __future__ import annotations

import codecs
import logging
import shlex

from ..config import TASKS
from ..run_files import FIT_JSON, RESULTS_JSON
from ..validation import ConfigError
from .common import (READ_BY_DEFAULT, device, estimator_options, output, overwrite, seed, table_run_options,
                     training_options, vanilla_fallback, verbosity)
from .table_source import check_target, load_table_source, table_source, table_task, task

LOGGER = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "fit", help="fit the estimator on a whole table and save it, to predict with",
        parents=[output(help="folder for the model and the record of its fit, fit.json (created if needed)"),
                 overwrite(), seed(), device(), verbosity(), table_source(allow_all=False, folds=False),
                 estimator_options(), vanilla_fallback(),
                 task("regression or classification of the target column (default: a registered table's task, "
                      "else regression)")],
        description="Fit MetaNeighborhoodsRegressor (or, for a classification table or with --task "
                    "classification, MetaNeighborhoodsClassifier, whose target column holds class labels, integers "
                    "or text) on every row of a table, early "
                    "stopping on a share of them as the estimator does, and write into --out the fitted estimator (model.json and "
                    "its tensors, which the estimator's load reads) and fit.json, the record of the fit: its "
                    "settings, the table's digest, its epochs and best loss, versions and command. "
                    "`meta-neighborhoods predict --model OUT` then predicts the rows of a CSV file. --config takes "
                    "the fit.json of a fit to rerun it (give --data-file again), or the results.json of a regress "
                    "run on one table to fit, on all its rows, with the settings that run cross-validated.",
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    check_target(args)  # before the imports: a usage error needs no torch
    from ..experiments.final_model import fit_final

    options = training_options(args)
    record = fit_final(load_table_source(args), args.out, task=table_task(args), **options)
    training = record["training"]
    kept = "" if training["kept"] == "meta_neighborhoods" else f", kept the {training['kept']} network"
    print(f"{record['estimator']} fit on {record['dataset']} ({record['n']} rows x {record['d']} features) in "
          f"{training['seconds']:.1f} s: {training['epochs']} epochs, best {training['loss']} loss "
          f"{training['best_loss']:.4g} ({training['measure']}) at epoch {training['best_epoch']}{kept}")
    read = {name: record["config"][name] for name in ("encoding", "separator", "decimal") if name in record["config"]}
    given = "".join(f" --{name} {shlex.quote(value)}" for name, value in read.items()  # a file like the table's
                    if (codecs.lookup(value).name if name == "encoding" else value) != READ_BY_DEFAULT[name])
    LOGGER.info("wrote %s/model.json (and its tensors) and %s/fit.json; predict with: meta-neighborhoods predict "
                "--model %s --data-file FILE --out predictions.csv%s", args.out, args.out, shlex.quote(str(args.out)),
                given)
    return 0


RECORDS = (FIT_JSON, RESULTS_JSON)  # what options_from_record reads: a fit's, and a regress run's


def options_from_record(record: dict) -> dict:
    """The options of the fit whose fit.json ``record`` is, for --config; a regress run's results.json gives the
    settings that run cross-validated (its protocol's folds and seeds are no fit's)."""
    if "param" in record or "datasets" in record:
        raise ConfigError("the record of an ablate run or of regress --dataset all; fit takes a fit.json or the "
                          "results.json of a regress run on one table")
    config = record.get("config")
    if not isinstance(config, dict):
        raise ConfigError("not the fit.json of a fit or the results.json of a regress run: it has no config")
    if config.get("task", TASKS[0]) not in TASKS:  # none recorded: the table's (table_task)
        raise ConfigError(f"its task should be one of {', '.join(TASKS)}, got {config['task']!r:.40}")
    if config.get("search") is True:
        raise ConfigError("its regress run searched the architecture per fold, which gives no one network to fit: "
                         "give --hidden-layer-sizes instead")
    protocol = ("folds", "seeds", "search") + (("max_rows",) if "folds" in config else ())  # the CV's, not a fit's
    return {key: value for key, value in table_run_options(record).items() if key not in protocol}
