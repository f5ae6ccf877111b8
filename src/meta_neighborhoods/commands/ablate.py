"""``meta-neighborhoods ablate``: Meta-Neighborhoods' cross-validated error against one of its parameters."""

from __future__ import annotations

from pathlib import Path

from .common import check_target, fit_options, load_table_source, run_options, table_source


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "ablate", help="Meta-Neighborhoods' CV error against one of its parameters",
        parents=[*run_options(), table_source(allow_all=False)],
        description="k-fold MSE of Meta-Neighborhoods for each value of one parameter (the same folds for every "
                    "value, the other parameters at the estimator's defaults); writes ablation.json, ablation.md "
                    "and ablation.png.",
    )
    # Not choices=: the list lives in experiments.regression, a slow import.
    parser.add_argument("--param", required=True,
                        help="parameter to vary: dictionary_size, temperature, top_k, inner_steps, step_size, "
                             "similarity, adapt or slot_dropout")
    parser.add_argument("--values", required=True, nargs="+", metavar="V",
                        help="values to try, e.g. 16 64 256 (temperature and top_k also take 'none': the default "
                             "temperature, full attention)")
    parser.set_defaults(run=run)


def run(args) -> int:
    check_target(args)  # before the imports: a usage error needs no torch
    from ..experiments.regression import run_ablation

    options = fit_options(args)
    run_ablation(load_table_source(args), args.out, args.param, args.values, **options)
    print((Path(args.out) / "ablation.md").read_text(), end="")
    return 0
