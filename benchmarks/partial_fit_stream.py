"""What ``partial_fit``'s carried training state is worth: a table fed to the regressor in chunks, one call per
chunk, for ``--passes`` passes over the stream, with the state carried from call to call (the estimator as it is:
AdamW's moments, the weight average and the generators go on) and restarted at every call (as before commit
7581864, emulated by dropping the carried state before each call), beside ``fit`` for as many epochs on all the
training rows at once (``early_stopping=False``). Each variant's test MSE (on the standardised target's scale) and
its median seconds per call; the variants take turns within each seed, in this process.

    python benchmarks/partial_fit_stream.py [--table protein] [--max-rows 20000] [--chunk 1000] [--passes 5]
        [--seeds 3] [--settings defaults vanilla] [--threads 1] [--json PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

from meta_neighborhoods import MetaNeighborhoodsRegressor
from meta_neighborhoods.datasets.tables import load_table
from meta_neighborhoods.experiments.cross_validation import subset_rows

from record import measure  # benchmarks/: scripts run from this folder

SETTINGS = {"defaults": {}, "vanilla": {"dictionary_size": 0}}
VARIANTS = ("carried", "restarted", "fit")


def stream(X, y, params: dict, seed: int, chunk: int, passes: int, carry: bool) -> tuple[object, list[float]]:
    """The regressor after ``passes`` passes of one ``partial_fit`` call per ``chunk`` rows (in a fixed shuffled
    order), and the seconds of each call."""
    estimator, seconds = MetaNeighborhoodsRegressor(random_state=seed, **params), []
    order = np.random.default_rng(seed).permutation(len(y))
    for _ in range(passes):
        for start in range(0, len(y), chunk):
            rows = order[start:start + chunk]
            if not carry:
                estimator._carried = {}  # the state a call goes on from, dropped: each call starts AdamW afresh
            began = time.perf_counter()
            estimator.partial_fit(X[rows], y[rows])
            seconds.append(time.perf_counter() - began)
    return estimator, seconds


def run(table, train, test, params: dict, seed: int, args, variant: str) -> dict:
    """Test MSE and median seconds per call (per fit, for ``fit``) of one variant."""
    X, y = table.X[train], table.y[train]
    if variant == "fit":
        began = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: max_epochs ends it, as asked
            estimator = MetaNeighborhoodsRegressor(random_state=seed, max_epochs=args.passes, early_stopping=False,
                                                   **params).fit(X, y)
        seconds = [time.perf_counter() - began]
    else:
        estimator, seconds = stream(X, y, params, seed, args.chunk, args.passes, variant == "carried")
    error = np.mean(((estimator.predict(table.X[test]) - table.y[test]) / np.std(y)) ** 2)
    return {"mse": float(error), "seconds": statistics.median(seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", default="protein")
    parser.add_argument("--data-dir")
    parser.add_argument("--max-rows", type=int, default=20000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument("--threads", type=int, default=1)
    measure(parser, _report)


def _report(args) -> dict:
    """Per setting and variant, each seed's test MSE and their median; the median seconds per call."""
    if min(args.chunk, args.passes, args.seeds) < 1:
        raise SystemExit("partial_fit_stream.py: --chunk, --passes and --seeds must be at least 1")
    table = subset_rows(load_table(args.table, args.data_dir), args.max_rows, 0)
    results = {setting: {variant: [] for variant in VARIANTS} for setting in args.settings}
    for seed in range(args.seeds):  # a test fifth of the rows per seed; every variant sees the same split
        order = np.random.default_rng(1000 + seed).permutation(len(table.y))
        test, train = order[:len(order) // 5], order[len(order) // 5:]
        for setting in args.settings:
            for variant in VARIANTS:
                results[setting][variant].append(run(table, train, test, SETTINGS[setting], seed, args, variant))
    print(f"{args.table}: {len(table.y)} rows (a fifth held out per seed), chunks of {args.chunk} rows, "
          f"{args.passes} passes, {args.seeds} seeds, {args.threads} thread(s); test MSE on the standardised target")
    print(f"{'setting':<10} {'variant':<10} {'median MSE':>10} {'/ carried':>9} {'s / call':>9}  MSE per seed")
    for setting, variants in results.items():
        carried = statistics.median(r["mse"] for r in variants["carried"])
        for variant, runs in variants.items():
            median = statistics.median(r["mse"] for r in runs)
            print(f"{setting:<10} {variant:<10} {median:>10.4f} {median / carried:>8.3f}x "
                  f"{statistics.median(r['seconds'] for r in runs):>9.3f}  "
                  + " ".join(f"{r['mse']:.4f}" for r in runs))
    return {"table": args.table, "rows": len(table.y), "chunk": args.chunk, "passes": args.passes,
            "seeds": args.seeds, "threads": args.threads, "results": results}


if __name__ == "__main__":
    main()
