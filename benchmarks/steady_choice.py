"""What the steady choice of keys costs at prediction, and what it buys: a row's keys its own whatever rows are
predicted with it (``similarity.steady_top``) against torch's plain top-k, which a batch's rounding reorders.

Time: ``predict`` of fresh rows on ``fit_scale.py``'s synthetic 90-feature table, models at the estimators'
defaults but ``dictionary_size`` fitted one epoch (no fallback), in the blocks the estimators choose and one row a
call; the two choices take turns (interleaved, medians). Batch independence: on a table of repeated rows (three
features in {0, 1, 2}, 600 rows, the dictionary fixed at the training rows, ``learn_dictionary=False``), the largest
difference between a row predicted in the whole batch and alone.

    python benchmarks/steady_choice.py [--sizes 512 4096 16384] [--rows 4096] [--repeats 5] [--threads 2]
        [--json PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import functools
import math
import warnings

import numpy as np
import torch

import meta_neighborhoods.similarity as similarity_module
from fit_scale import table  # benchmarks/: scripts run from this folder
from meta_neighborhoods import MetaNeighborhoodsRegressor
from record import Record, add_options  # benchmarks/: scripts run from this folder
from timing import timed

STEADY = similarity_module.steady_top
CHOICES = {"steady": STEADY, "plain": lambda scores, k: scores.topk(k, dim=1, sorted=False)}


def fitted(X: np.ndarray, y: np.ndarray, **params) -> MetaNeighborhoodsRegressor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short fit does not converge, and is not meant to
        return MetaNeighborhoodsRegressor(vanilla_fallback=False, random_state=0, **params).fit(X, y)


def predict(model: MetaNeighborhoodsRegressor, X: np.ndarray, choice: str) -> np.ndarray:
    similarity_module.steady_top = CHOICES[choice]
    return model.predict(X)


def batch_gap(choice: str) -> float:
    """The largest |batch - alone| prediction on the repeated rows, with ``choice``."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 3, size=(600, 3)).astype(float)
    model = fitted(X, X.sum(1) + rng.normal(size=600), max_epochs=2, n_iter_no_change=2, learn_dictionary=False,
                   hidden_layer_sizes=(8,))
    whole = predict(model, X, choice)
    return float(max(abs(predict(model, X[i : i + 1], choice)[0] - whole[i]) for i in range(len(X))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 4096, 16384], help="dictionary sizes S")
    parser.add_argument("--rows", type=int, default=4096, help="fresh rows predicted per call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    add_options(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with Record(args.json, args.out) as record:
        try:
            record.figures = _report(args)
        finally:
            similarity_module.steady_top = STEADY


def _report(args) -> dict:
    X, y = table(math.ceil(max(args.sizes) / 0.9) + args.rows)
    train, fresh = slice(0, len(y) - args.rows), slice(len(y) - args.rows, None)
    models = {size: fitted(X[train], y[train], dictionary_size=size, max_epochs=1) for size in args.sizes}
    calls = {(size, rows, choice): functools.partial(predict, model, X[fresh][:rows], choice)
             for size, model in models.items() for rows in (args.rows, 1) for choice in CHOICES}
    ms = timed(calls, args.repeats, 1, torch.device("cpu"))
    gaps = {choice: batch_gap(choice) for choice in CHOICES}
    print(f"predict, microseconds per row, 90 features, MLP 128-128, the defaults but S, {args.threads} threads, "
          f"torch {torch.__version__}; interleaved, median of {args.repeats} rounds")
    print(f"{'S':>7}{'rows':>7}{'steady':>10}{'plain':>10}{'steady / plain':>16}")
    for size in args.sizes:
        for rows in (args.rows, 1):
            steady, plain = (ms[size, rows, choice] * 1e3 / rows for choice in CHOICES)
            print(f"{size:>7}{rows:>7}{steady:>10.1f}{plain:>10.1f}{steady / plain:>15.2f}x")
    print("largest |batch - alone| on 600 repeated rows (fixed dictionary): "
          + ", ".join(f"{choice} {gap:.1e}" for choice, gap in gaps.items()))
    return {"rows": args.rows, "threads": args.threads, "batch_gap": gaps,
            "us_per_row": {f"S={s} rows={r} {c}": round(t * 1e3 / r, 2) for (s, r, c), t in ms.items()}}


if __name__ == "__main__":
    main()
