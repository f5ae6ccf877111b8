"""What a second phase of training (``refine_factor``) costs: whole-fit seconds and epochs of the regressor at its
defaults, with and without it, on the first of five folds of each table (the rows ``defaults_sweep.py`` cuts).

A fit with the second phase is the plain fit and then more epochs of the network kept (the same seed, so its first
phase is the plain fit's), so the ratio of seconds is the price of the option on that table. The two take turns
over ``--repeats`` rounds in this process; medians. One fold's test MSE is printed too: an anecdote, not a result
(``defaults.md`` has the three-seed figures).

    python benchmarks/refine_cost.py [--tables concrete gom naval] [--factor 0.1] [--repeats 2] [--threads 1]
        [--max-epochs N] [--json PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

from meta_neighborhoods import MetaNeighborhoodsRegressor
from meta_neighborhoods.datasets.tables import load_table
from meta_neighborhoods.estimator_settings import check_settings
from meta_neighborhoods.experiments.cross_validation import repeated_folds, subset_rows
from meta_neighborhoods.validation import ConfigError

from record import measure  # benchmarks/: scripts run from this folder


def fit(table, train, test, params: dict) -> dict:
    """Seconds, epochs and test MSE (on the standardised target's scale, as Table 2) of one fit at seed 0."""
    estimator = MetaNeighborhoodsRegressor(random_state=0, **params)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: a fit cut short is timed as it ran
        estimator.fit(table.X[train], table.y[train])
    seconds = time.perf_counter() - start
    scale = np.std(table.y[train])
    error = float(np.mean(((estimator.predict(table.X[test]) - table.y[test]) / scale) ** 2))
    return {"seconds": seconds, "epochs": estimator.n_iter_, "mse": error}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", nargs="+", default=["concrete", "gom", "naval"])
    parser.add_argument("--data-dir")
    parser.add_argument("--max-rows", type=int, default=1000)
    parser.add_argument("--factor", type=float, default=0.1)
    parser.add_argument("--max-epochs", type=int, help="max_epochs of each phase (default: the estimator's)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    measure(parser, _rounds)


def _rounds(args) -> dict:
    """Per table, the median seconds of each setting over the interleaved rounds, with its epochs and test MSE."""
    bound = {} if args.max_epochs is None else {"max_epochs": args.max_epochs}
    try:  # refused in one line before any fit, as the estimator's fit would refuse it
        check_settings(MetaNeighborhoodsRegressor(**bound, refine_factor=args.factor))
    except ConfigError as error:
        raise SystemExit(f"refine_cost.py: {error}") from None
    settings = {"defaults": bound, "refined": {**bound, "refine_factor": args.factor}}
    figures = {}
    print(f"whole fits at the defaults, first of 5 folds, seed 0, {args.threads} thread(s), median of "
          f"{args.repeats} interleaved rounds; refined: refine_factor={args.factor:g}")
    print(f"{'table':<14} {'s defaults':>10} {'s refined':>10} {'ratio':>6} {'epochs':>12} {'test MSE':>17}")
    for name in args.tables:
        table = subset_rows(load_table(name, args.data_dir), args.max_rows, 0)
        _, _, train, test = next(repeated_folds(len(table.y), 5, 0, 1))
        if not figures:  # what a process's first fit pays once (torch's optimiser machinery: ~1 s), paid untimed
            fit(table, train[:64], test, {"max_epochs": 1, "refine_factor": args.factor})
        rounds = {setting: [] for setting in settings}
        for _ in range(args.repeats):
            for setting, params in settings.items():
                rounds[setting].append(fit(table, train, test, params))
        median = {setting: statistics.median(r["seconds"] for r in runs) for setting, runs in rounds.items()}
        epochs, mse = ({s: runs[0][key] for s, runs in rounds.items()} for key in ("epochs", "mse"))
        print(f"{name:<14} {median['defaults']:>10.2f} {median['refined']:>10.2f} "
              f"{median['refined'] / median['defaults']:>5.2f}x {epochs['defaults']:>5} {epochs['refined']:>6} "
              f"{mse['defaults']:>8.4g} {mse['refined']:>8.4g}")
        figures[name] = {"rows": len(table.y), "seconds": median, "epochs": epochs, "mse": mse, "rounds": rounds}
    return {"threads": args.threads, "factor": args.factor, "repeats": args.repeats, "tables": figures}


if __name__ == "__main__":
    main()
