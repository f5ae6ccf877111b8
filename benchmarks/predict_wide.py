"""Prediction on a wide table with more keys than 32 per neighbour: the gathered path against the dense path.

Beyond ``model.DENSE_BELOW`` keys per k prediction attends through the keys each block of rows chooses
(``MetaNeighborhoods.predict_top_k``) instead of dense (rows x keys) weights. One network at the estimators'
defaults (last layer adapted, top-128 with slot dropout 0.5: 256 keys a row at evaluation) with ``--keys`` keys in
``--features`` features, untrained (the cost does not depend on the weights), predicts ``--rows`` rows in the blocks
the estimators choose (``prediction_rows``), once as it is and once with the dense path forced (DENSE_BELOW raised);
interleaved, medians, and the largest difference between the two.

    python benchmarks/predict_wide.py [--features 2000] [--keys 9000] [--rows 1024] [--repeats 3] [--threads 1]
        [--json PATH] [--out PATH]
"""

from __future__ import annotations

import argparse

import torch

from meta_neighborhoods import MetaNeighborhoods
from meta_neighborhoods import model as model_module
from meta_neighborhoods.estimator_rows import prediction_rows
from meta_neighborhoods.heads import MLPHead
from record import measure  # benchmarks/: scripts run from this folder
from timing import timed


def predict(model: MetaNeighborhoods, X: torch.Tensor, dense: bool) -> torch.Tensor:
    """``X`` predicted in the blocks the estimators would take, on the gathered path or forced dense."""
    saved = model_module.DENSE_BELOW
    model_module.DENSE_BELOW = 10**9 if dense else saved
    try:
        size = prediction_rows(model)
        with torch.no_grad():
            return torch.cat([model(X[i:i + size]) for i in range(0, len(X), size)])
    finally:
        model_module.DENSE_BELOW = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=2000)
    parser.add_argument("--keys", type=int, default=9000)
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    measure(parser, _report)


def _report(args) -> dict:
    """Time the two paths, taking turns, and print them; the figures (``--json``)."""
    torch.manual_seed(0)
    model = MetaNeighborhoods(MLPHead(args.features, (128, 128)), dictionary_size=args.keys, top_k=128,
                              slot_dropout=0.5).eval()
    X = torch.randn(args.rows, args.features)
    steps = {"gathered": lambda: predict(model, X, False), "dense": lambda: predict(model, X, True)}
    ms = timed(steps, args.repeats, 1, torch.device("cpu"))
    difference = (predict(model, X, False) - predict(model, X, True)).abs().max().item()
    print(f"{args.features} features, {args.keys} keys, k = 256 at evaluation, {args.rows} rows, {args.threads} "
          f"thread(s); interleaved, median of {args.repeats}; blocks of {prediction_rows(model)} rows gathered")
    print(f"{'path':<10} {'ms / row':>9} {'vs dense':>9}")
    for name, value in ms.items():
        print(f"{name:<10} {value / args.rows:>9.3f} {value / ms['dense']:>8.2f}x")
    print(f"largest difference between the two: {difference:.2g}")
    return {**vars(args), "ms": ms, "max_difference": difference}


if __name__ == "__main__":
    main()
