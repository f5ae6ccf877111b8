"""Seconds per training epoch of the regressor at its defaults on a registered table, whole, against vanilla.

What the cost of the defaults on a larger table (docs/results/speed_and_cost.md) rests on. Each setting fits 1 epoch
and 1 + ``--epochs`` epochs (``max_epochs`` caps them; the patience is never reached); an epoch's seconds are the
difference over ``--epochs``, so each fit's set-up drops out, and what a process's first fit pays once is paid before
the timing, by a fit of each setting on 256 rows. At the defaults an epoch trains both networks the vanilla fallback
compares (and validates both). Settings take turns over ``--repeats`` rounds; medians.

    python benchmarks/epoch_time.py [--table protein] [--epochs 3] [--repeats 3] [--threads 1]
        [--json PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

from meta_neighborhoods import MetaNeighborhoodsRegressor
from meta_neighborhoods.datasets.tables import load_table

from record import measure  # benchmarks/: scripts run from this folder

SETTINGS = {"vanilla": {"dictionary_size": 0}, "defaults": {}}


def seconds(X, y, params: dict, epochs: int) -> float:
    """Wall seconds of one fit of ``epochs`` epochs (seed 0)."""
    estimator = MetaNeighborhoodsRegressor(max_epochs=epochs, random_state=0, **params)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: stopped at max_epochs, as asked
        estimator.fit(X, y)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", default="protein")
    parser.add_argument("--data-dir")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    measure(parser, _rounds)


def _rounds(args) -> dict:
    """Each setting's seconds per epoch over ``--repeats`` interleaved rounds, printed; the figures."""
    table = load_table(args.table, args.data_dir)
    for params in SETTINGS.values():  # what a process's first fit pays once (torch's optimiser machinery: ~1 s)
        seconds(table.X[:256], table.y[:256], params, 1)
    rounds = {name: [] for name in SETTINGS}
    for _ in range(args.repeats):
        for name, params in SETTINGS.items():
            one, more = (seconds(table.X, table.y, params, n) for n in (1, 1 + args.epochs))
            rounds[name].append((more - one) / args.epochs)
    median = {name: statistics.median(values) for name, values in rounds.items()}
    print(f"{args.table}: {len(table.y):,} rows x {table.X.shape[1]}, {args.threads} thread(s), seconds per epoch "
          f"(median of {args.repeats} interleaved rounds; fits of 1 and {1 + args.epochs} epochs)")
    print(f"{'setting':<10} {'s / epoch':>10} {'vs vanilla':>11}")
    for name, value in median.items():
        print(f"{name:<10} {value:>10.2f} {value / median['vanilla']:>10.1f}x")
    return {"table": args.table, "rows": len(table.y), "threads": args.threads, "epochs": args.epochs,
            "seconds_per_epoch": median, "rounds": rounds}


if __name__ == "__main__":
    main()
