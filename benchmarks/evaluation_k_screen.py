"""One-seed screen: how many neighbours should a fit trained with top-K attention attend to at evaluation?

Fits MetaNeighborhoodsRegressor at the defaults of its time (patience 60) on the 5 folds of one seed of
``regress``'s protocol, then scores the same fitted network on the fold's test rows with K_eval in KS keys
(None: all of them), relative to K_eval = 32. It led to evaluating at K / (1 - slot_dropout) keys
(``MNConfig.neighbourhood_size``); the sweep of ``defaults_sweep.py`` is what tested that rule. Prints one JSON line per fold and a summary.

``--out PATH`` writes the printed lines under a header of what produced them (``record.py``: commit, command,
versions, threads); ``--json PATH`` the ratios with the same record.

    python benchmarks/evaluation_k_screen.py --tables boston concrete ... [--max-rows 1000] [--seed 0] [--json PATH]
        [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from meta_neighborhoods import MetaNeighborhoodsRegressor
from meta_neighborhoods.datasets.tables import load_table
from meta_neighborhoods.experiments.cross_validation import repeated_folds, standardised_fold, subset_rows
from record import Record, add_options  # benchmarks/: scripts run from this folder

KS = (8, 16, 32, 64, 128, 256, None)


def screen(name: str, max_rows: int, seed: int, data_dir: str | None) -> dict:
    table = subset_rows(load_table(name, data_dir), max_rows, seed)
    errors = {k: [] for k in KS}
    for _, fold, train, test in repeated_folds(len(table.y), 5, seed, 1):
        X_train, y_train, X_test, y_test = standardised_fold(table, train, test)  # as regress scales the target
        model = MetaNeighborhoodsRegressor(random_state=seed, n_iter_no_change=60,  # the network with neighbours
                                           vanilla_fallback=False).fit(X_train, y_train)
        trained = model.model_.config
        for k in KS:
            model.model_.config = trained.replace(top_k=k, slot_dropout=0.0)  # exactly k keys at evaluation
            errors[k].append(float(np.mean((model.predict(X_test) - y_test) ** 2)))
        print(json.dumps({"table": name, "fold": fold, **{str(k): errors[k][-1] for k in KS}}), flush=True)
    return {str(k): float(np.mean(e) / np.mean(errors[32])) for k, e in errors.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", nargs="+", required=True)
    parser.add_argument("--max-rows", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir")
    add_options(parser)
    args = parser.parse_args()
    with Record(args.json, args.out) as record:
        record.figures = _report(args)


def _report(args) -> dict:
    """Screen every table and print the table of ratios; the ratios, table by table (``--json``)."""
    ratios = {name: screen(name, args.max_rows, args.seed, args.data_dir) for name in args.tables}
    print("\n| table | " + " | ".join(f"K = {k}" for k in KS) + " |\n|---|" + "---|" * len(KS))
    for name, row in ratios.items():
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row.values()) + " |")
    geo = {k: math.exp(np.mean([math.log(r[k]) for r in ratios.values()])) for k in map(str, KS)}
    print("| geometric mean | " + " | ".join(f"{v:.3f}" for v in geo.values()) + " |")
    return {"tables": args.tables, "max_rows": args.max_rows, "seed": args.seed, "ratios": ratios,
            "geometric_mean": geo}


if __name__ == "__main__":
    main()
