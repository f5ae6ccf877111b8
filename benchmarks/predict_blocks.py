"""How many rows the network should predict at once: the estimators' prediction time per row against the block size.

Each block of rows meets every key: its attention matrices (rows x S) are several times the block's own size, so a
block too large for the processor's caches is paid in memory traffic, one too small in per-block overhead (the keys'
own pass is made again for each block). Models at the estimators' defaults but ``dictionary_size`` (0 is the vanilla
network), fitted one epoch on ``fit_scale.py``'s synthetic 90-feature table (no fallback: the network with
neighbours is the one timed), then ``predict`` on fresh rows in blocks of each size, and in those the estimators
choose (``estimator_rows.prediction_rows``: "chosen"). Interleaved (one call of each per round), medians; the
last column is the largest difference of a block size's predictions from those of 4,096-row blocks, the size used
before.

    python benchmarks/predict_blocks.py [--sizes 0 512 4096 8192 16384] [--blocks 4096 2048 1024 512 256]
        [--rows 4096] [--repeats 5] [--threads 2] [--json PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import functools
import math
import warnings

import numpy as np
import torch

from fit_scale import table  # benchmarks/: scripts run from this folder
import meta_neighborhoods.estimator_rows as rows_module
from meta_neighborhoods import MetaNeighborhoodsRegressor
from record import Record, add_options  # benchmarks/: scripts run from this folder
from timing import timed

CHOSEN = rows_module.network_batch


def fitted(size: int, X: np.ndarray, y: np.ndarray, **options) -> MetaNeighborhoodsRegressor:
    """The defaults but ``dictionary_size`` and ``options``, one epoch, no fallback: the network with neighbours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short fit does not converge, and is not meant to
        return MetaNeighborhoodsRegressor(dictionary_size=size, vanilla_fallback=False, random_state=0,
                                          **{"max_epochs": 1, **options}).fit(X, y)


def chosen_block(model: MetaNeighborhoodsRegressor) -> int:
    """The rows the estimators predict at once for this fitted model (its keys: the fit may keep fewer than S)."""
    return rows_module.prediction_rows(model.model_)


def predict(model: MetaNeighborhoodsRegressor, X: np.ndarray, block: int | None) -> np.ndarray:
    """``model.predict(X)`` in blocks of ``block`` rows (None: as the estimators choose)."""
    rows_module.network_batch = CHOSEN if block is None else lambda keys, gathered=0: block
    return model.predict(X)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 512, 4096, 8192, 16384],
                        help="dictionary sizes S (0: vanilla)")
    parser.add_argument("--blocks", type=int, nargs="+", default=[4096, 2048, 1024, 512, 256],
                        help="rows per block (positive)")
    parser.add_argument("--rows", type=int, default=4096, help="fresh rows predicted per call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    add_options(parser)
    args = parser.parse_args()
    if min(args.blocks) < 1:
        parser.error(f"--blocks must be positive, got {args.blocks}")
    torch.set_num_threads(args.threads)
    with Record(args.json, args.out) as record:
        record.figures = _report(args)


def _report(args) -> dict:
    """Time every S x block, taking turns, and print them; the figures (``--json``)."""
    X, y = table(math.ceil(max(max(args.sizes), 4096) / 0.9) + args.rows)  # S training rows besides the validation's
    train, fresh = slice(0, len(y) - args.rows), slice(len(y) - args.rows, None)
    models = {size: fitted(size, X[train], y[train]) for size in args.sizes}
    blocks = [*args.blocks, None]
    calls = {(size, block): functools.partial(predict, model, X[fresh], block)
             for size, model in models.items() for block in blocks}
    try:
        ms = timed(calls, args.repeats, 1, torch.device("cpu"))
        before = {size: predict(model, X[fresh], 4096) for size, model in models.items()}
        gaps = {key: float(np.abs(call() - before[key[0]]).max()) for key, call in calls.items()}
    finally:
        rows_module.network_batch = CHOSEN

    print(f"predict, microseconds per row, {args.rows} fresh rows, 90 features, MLP 128-128, the defaults but S, "
          f"{args.threads} threads, torch {torch.__version__}; interleaved, median of {args.repeats} rounds")
    print(f"{'S':>7}" + "".join(f"{block:>10}" for block in args.blocks) + f"{'chosen':>14}{'chosen / 4096':>15}"
          f"{'max |diff|':>12}")
    for size in args.sizes:
        per_row = {block: ms[size, block] * 1e3 / args.rows for block in blocks}
        ratio = per_row[None] / per_row[4096] if 4096 in per_row else float("nan")
        chosen = f"{per_row[None]:.1f} ({chosen_block(models[size])})"
        gap = max(gaps[size, block] for block in blocks)
        print(f"{size:>7}" + "".join(f"{per_row[b]:>10.1f}" for b in args.blocks) + f"{chosen:>14}{ratio:>14.2f}x"
              f"{gap:>12.1e}")
    return {"rows": args.rows, "threads": args.threads,
            "us_per_row": {f"S={s} block={b or 'chosen'}": round(t * 1e3 / args.rows, 2) for (s, b), t in ms.items()},
            "chosen_block": {f"S={s}": chosen_block(models[s]) for s in args.sizes},
            "max_abs_diff_vs_4096": {f"S={s} block={b or 'chosen'}": g for (s, b), g in gaps.items()}}


if __name__ == "__main__":
    main()
