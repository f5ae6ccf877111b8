"""``meta-neighborhoods ablate``: Meta-Neighborhoods' cross-validated error against one of its parameters."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import ABLATION_TYPES, MAX_VALUES
from ..run_files import ABLATION_JSON, ABLATION_MD, ABLATION_PNG
from ..validation import NONE, ConfigError
from .common import ESTIMATOR_OPTIONS, UsageError, estimator_options, fit_options, run_options, table_run_options
from .table_source import check_target, load_table_source, table_source, table_task, task

LOGGER = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "ablate", help="Meta-Neighborhoods' CV error against one of its parameters",
        parents=[*run_options(), table_source(allow_all=False), estimator_options(),
                 task("regression (the MSE on the standardised target) or classification (the error rate, on folds "
                      "stratified by class) of the target column (default: a registered table's task, else "
                      "regression)")],
        description="Repeated k-fold MSE of Meta-Neighborhoods (a classifier's error rate on a classification "
                    "table, or with --task classification) for each value of one parameter (the same folds for every "
                    "value, the other parameters at the estimator's defaults, without the vanilla fallback: the "
                    "network with neighbours is always kept); writes ablation.json, ablation.md "
                    "and ablation.png.",
    )
    parser.add_argument("--param", required=True, choices=tuple(ABLATION_TYPES), metavar="NAME",
                        help=f"parameter to vary: {', '.join(ABLATION_TYPES)}")
    parser.add_argument("--values", required=True, nargs="+", metavar="V",
                        help=f"values to try, at most {MAX_VALUES}, e.g. 16 64 256 (temperature and top_k also "
                             "take 'none': the default temperature, full attention)")
    parser.set_defaults(run=run)


def run(args) -> int:
    check_target(args)  # before the imports: a usage error needs no torch
    if args.param in ESTIMATOR_OPTIONS and getattr(args, args.param) is not None:
        raise UsageError(f"--param {args.param} is varied over --values; drop --{args.param.replace('_', '-')}")
    from ..experiments.table_runs import run_ablation

    options = fit_options(args)
    try:
        run_ablation(load_table_source(args), args.out, args.param, args.values, **options, task=table_task(args))
    except ConfigError as error:  # a value of the ablated parameter is one of --values (which a --config file gives)
        if error.setting != args.param:
            raise
        raise ConfigError(str(error), "values") from None
    print((Path(args.out) / ABLATION_MD).read_text(), end="")
    LOGGER.info("wrote %s/%s, %s, %s", args.out, ABLATION_MD, ABLATION_JSON, ABLATION_PNG)
    return 0


RECORDS = (ABLATION_JSON,)  # what options_from_record reads


def options_from_record(record: dict) -> dict:
    """The options of the ablate run whose ablation.json ``record`` is, for --config ('none' for a value None)."""
    if "param" not in record:
        raise ConfigError("not the ablation.json of an ablate run")
    values = record.get("values")
    listed = [NONE if value is None else value for value in values] if isinstance(values, list) else values
    return {**table_run_options(record), "param": record["param"], "values": listed}
