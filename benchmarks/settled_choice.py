"""What the settled choice of keys costs prediction, and what it mends.

At evaluation a row's k keys are ``similarity.settled``: chosen by a rule no other row of the batch can change,
which ranks again (in float64) only the rows whose float32 choice is in doubt. Timed against the plain float32
choice (a top-k of the batch's similarities, which the rule replaced), both on models at the estimators' defaults
but ``dictionary_size`` and without the vanilla fallback (the network with neighbours is the one timed), fitted one
epoch on ``fit_scale.py``'s 90-feature table: ``predict`` of fresh rows in the blocks the estimators choose, and one
row a call. A dictionary of at most 2 ``top_k`` keys (256 at the defaults) is all attended to: nothing to choose.
Interleaved (one call of each per round), medians. Then the share of rows ranked again, and the largest gap
between a row predicted alone and in the whole batch on a table of ties (three features in {0, 1, 2}, 600 rows, a
dictionary of 512 fixed at training rows), with each choice.

    python benchmarks/settled_choice.py [--sizes 512 4096 16384] [--rows 4096] [--single 64] [--repeats 5]
        [--tie-seeds 3] [--threads 2] [--json PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import functools
import math

import numpy as np
import torch

from fit_scale import table  # benchmarks/: scripts run from this folder
from predict_blocks import fitted
import meta_neighborhoods.similarity as similarity_module
from meta_neighborhoods import MetaNeighborhoodsRegressor
from record import measure  # benchmarks/: scripts run from this folder
from timing import timed

SETTLED, RANKED_AGAIN = similarity_module.settled, similarity_module._ranked_again


def plain(scores, z, keys, kind, k, temperature):
    """The float32 choice the rule replaced."""
    return scores.topk(k, dim=1, sorted=False).indices


CHOICES = {"settled": SETTLED, "float32": plain}


def predict(model: MetaNeighborhoodsRegressor, X: np.ndarray, choice, single: bool) -> np.ndarray:
    """``model.predict`` with ``choice`` of keys: of all ``X`` at once, or one row a call."""
    similarity_module.settled = choice
    if single:
        return np.concatenate([model.predict(X[i:i + 1]) for i in range(len(X))])
    return model.predict(X)


def ranked_again(model: MetaNeighborhoodsRegressor, X: np.ndarray) -> float:
    """The share of rows of ``X`` whose float32 choice was in doubt, so that some of their keys were ranked again."""
    rows = []

    def counting(best, *args):
        rows.append(len(best))
        return RANKED_AGAIN(best, *args)

    similarity_module._ranked_again = counting
    try:
        predict(model, X, SETTLED, False)
    finally:
        similarity_module._ranked_again = RANKED_AGAIN
    return sum(rows) / len(X)


def tie_gaps(seeds: int) -> dict[str, float]:
    """The largest gap, relative, between a row predicted alone and in the whole batch, on tables of ties."""
    gaps = dict.fromkeys(CHOICES, 0.0)
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        X = rng.integers(0, 3, size=(600, 3)).astype(float)
        y = X @ rng.normal(size=3) + np.sin(X.sum(1)) + 0.1 * rng.normal(size=600)
        model = fitted(512, X, y, max_epochs=3, learn_dictionary=False)
        for name, choice in CHOICES.items():
            whole, alone = predict(model, X, choice, False), predict(model, X[::3], choice, True)
            gaps[name] = max(gaps[name], float(np.abs(alone - whole[::3]).max() / np.abs(whole).max()))
    return gaps


def _report(args) -> dict:
    """Time each S x (settled, float32) x (block, one row), taking turns, and print them; the figures."""
    X, y = table(math.ceil(max(args.sizes) / 0.9) + args.rows)  # S training rows besides the validation's
    train, fresh = slice(0, len(y) - args.rows), X[len(y) - args.rows:]
    models = {size: fitted(size, X[train], y[train]) for size in args.sizes}
    calls = {(size, name, single): functools.partial(predict, model, fresh[:args.single] if single else fresh, choice,
                                                     single)
             for size, model in models.items() for name, choice in CHOICES.items() for single in (False, True)}
    try:
        ms = timed(calls, args.repeats, 1, torch.device("cpu"))
        again = {size: ranked_again(model, fresh) for size, model in models.items()}
        gaps = tie_gaps(args.tie_seeds)
    finally:
        similarity_module.settled = SETTLED
    print(f"predict, microseconds per row, settled choice against the float32 one; {args.rows} fresh rows in the "
          f"estimators' blocks, {args.single} one a call; 90 features, the defaults but S, {args.threads} threads, "
          f"torch {torch.__version__}; interleaved, median of {args.repeats} rounds")
    print(f"{'S':>7}{'block: settled':>16}{'float32':>9}{'ratio':>8}{'one row: settled':>18}{'float32':>9}"
          f"{'ratio':>8}{'rows ranked again':>19}")
    per_row = {key: t * 1e3 / (args.single if key[2] else args.rows) for key, t in ms.items()}
    for size in args.sizes:
        cells = "".join(f"{per_row[size, 'settled', single]:>{16 if not single else 18}.1f}"
                        f"{per_row[size, 'float32', single]:>9.1f}"
                        f"{per_row[size, 'settled', single] / per_row[size, 'float32', single]:>7.2f}x"
                        for single in (False, True))
        print(f"{size:>7}{cells}{again[size]:>18.2%}")
    print(f"a row alone against the whole batch, ties, {args.tie_seeds} seed(s), largest relative gap: "
          f"settled {gaps['settled']:.1e}, float32 {gaps['float32']:.1e}")
    return {"rows": args.rows, "single": args.single, "threads": args.threads,
            "us_per_row": {f"S={s} {name} {'one row' if single else 'block'}": round(t, 2)
                           for (s, name, single), t in per_row.items()},
            "ranked_again": {f"S={s}": share for s, share in again.items()}, "tie_seeds": args.tie_seeds,
            "tie_gap": gaps}


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def _check(parser):
    """``_report``, where the options fit together."""
    def report(args):
        if args.single > args.rows:
            parser.error(f"--single ({args.single}) takes its rows from the --rows ({args.rows}) fresh ones")
        return _report(args)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=_positive, nargs="+", default=[512, 4096, 16384], help="dictionary sizes S")
    parser.add_argument("--rows", type=_positive, default=4096, help="fresh rows predicted at once")
    parser.add_argument("--single", type=_positive, default=64, help="fresh rows predicted one a call")
    parser.add_argument("--tie-seeds", type=_positive, default=3, help="tables of ties, each fitted once")
    parser.add_argument("--repeats", type=_positive, default=5)
    parser.add_argument("--threads", type=_positive, default=2)
    measure(parser, _check(parser))


if __name__ == "__main__":
    main()
