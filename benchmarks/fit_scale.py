"""Fit time per epoch and peak memory of Meta-Neighborhoods and vanilla at the size of the paper's "music" set.

A synthetic regression table of 515,345 x 90 rows (a random two-layer network of the inputs plus noise). Each
setting is fitted for ``--epochs`` epochs in a fresh process, so that its peak resident memory (ru_maxrss) is
its own; settings take turns over ``--repeats`` rounds and the medians are reported, with ratios to vanilla.
The fit includes standardisation, the validation pass of early stopping (10 % of the rows) and every step.

    python benchmarks/fit_scale.py [--rows 515345] [--epochs 1] [--repeats 1] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

_NO_DROP = {"slot_dropout": 0.0}
SETTINGS = {  # name: estimator parameters (besides the defaults)
    "vanilla": {"dictionary_size": 0},
    "defaults": {},  # with the vanilla fallback: the network with neighbours, then the vanilla one, both trained
    "defaults alone": {"vanilla_fallback": False},  # the network with neighbours only
    "batch draw": {"slot_draw": "batch"},  # one slot-dropout draw per batch: the hidden keys cost nothing
    "full attention": {"top_k": None},  # the defaults with every key attended to
    "S=512 full": {"dictionary_size": 512, "top_k": None, **_NO_DROP},  # the defaults before patience 60
    "S=512 K=32": {"dictionary_size": 512, "top_k": 32, **_NO_DROP},
    "S=4096 K=32": {"dictionary_size": 4096, "top_k": 32, **_NO_DROP},
    "S=16384 K=32": {"dictionary_size": 16384, "top_k": 32, **_NO_DROP},
    "S=16384 full": {"dictionary_size": 16384, "top_k": None, **_NO_DROP},
    "all layers, K=32": {"adapt": "all", "top_k": 32},  # the defaults before last-layer adaptation
    "last layer, K=32": {"adapt": "last", "top_k": 32},
    "batch 1024": {"batch_size": 1024},  # a step's pass over the keys shared by more rows
    "vanilla, batch 1024": {"dictionary_size": 0, "batch_size": 1024},
}


def table(rows: int, features: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features)).astype(np.float64)
    hidden = np.tanh(X @ rng.normal(size=(features, 32)) / np.sqrt(features))
    return X, hidden @ rng.normal(size=32) + 0.3 * rng.normal(size=rows)


def one(setting: str, rows: int, epochs: int) -> dict:
    """Fit one setting here; its seconds and this process's peak memory."""
    import torch

    from meta_neighborhoods import MetaNeighborhoodsRegressor

    torch.set_num_threads(2)
    X, y = table(rows)
    started = time.perf_counter()
    MetaNeighborhoodsRegressor(max_epochs=epochs, random_state=0, **SETTINGS[setting]).fit(X, y)
    seconds = time.perf_counter() - started
    return {"seconds_per_epoch": seconds / epochs, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=515_345)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--json")
    parser.add_argument("--one", choices=list(SETTINGS), help=argparse.SUPPRESS)  # the child process's setting
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.rows, args.epochs)))
        return
    runs = {name: [] for name in args.settings}
    for _ in range(args.repeats):
        for name in args.settings:  # interleaved: a change of load hits every setting alike
            child = subprocess.run([sys.executable, __file__, "--one", name, "--rows", str(args.rows), "--epochs",
                                    str(args.epochs)], capture_output=True, text=True, check=True)
            runs[name].append(json.loads(child.stdout.strip().splitlines()[-1]))
            print(f"  {name}: {runs[name][-1]}", file=sys.stderr, flush=True)
    result = {name: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for name, rs in runs.items()}
    base = result.get("vanilla", {}).get("seconds_per_epoch")
    print(f"fit on {args.rows:,} x 90 rows, {args.epochs} epoch(s), median of {args.repeats}, 2 threads")
    print(f"{'setting':<20}{'s / epoch':>11}{'vs vanilla':>12}{'peak MB':>10}")
    for name, r in result.items():
        ratio = f"{r['seconds_per_epoch'] / base:.1f}x" if base else "—"
        print(f"{name:<20}{r['seconds_per_epoch']:>11.1f}{ratio:>12}{r['peak_mb']:>10.0f}")
    if args.json:
        from meta_neighborhoods.io import write_json  # here: the parent process needs no torch otherwise
        from meta_neighborhoods.provenance import provenance

        write_json(args.json, {"rows": args.rows, "epochs": args.epochs, "settings": result,
                               "provenance": provenance()})


if __name__ == "__main__":
    main()
