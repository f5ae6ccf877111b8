"""The classifier's defaults, by the protocol of ``regress``: repeated stratified k-fold accuracy on several tables.

Tables: scikit-learn's digits (shipped with scikit-learn) and two synthetic ``make_classification`` tables
(20 and 60 features), on which the defaults were chosen; and, to judge them on tables they were not chosen on,
scikit-learn's other shipped classification tables (breast-cancer, wine, iris). Every candidate setting of MetaNeighborhoodsClassifier and the same estimator with
``dictionary_size=0`` see the same folds; the report gives mean accuracy, the candidate minus vanilla, folds won
and Nadeau & Bengio's corrected t-test, per table.

    python benchmarks/classifier_defaults.py [--seeds 3] [--folds 5] [--json PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine, make_classification

from meta_neighborhoods.config import CLASSIFICATION
from meta_neighborhoods.datasets.tables import Table
from meta_neighborhoods.experiments.cross_validation import available_methods, cross_validate, with_params
from meta_neighborhoods.heads import PeriodicMLPHead
from meta_neighborhoods.significance import corrected_t_test, shown_p
from record import Record, add_options  # benchmarks/: scripts run from this folder

CANDIDATES = {
    "vanilla": {"dictionary_size": 0},
    "S128 auto": {"dictionary_size": 128, "top_k": None, "slot_dropout": 0.0, "similarity": "auto"},
    "S128 euclidean": {"dictionary_size": 128, "top_k": None, "slot_dropout": 0.0, "similarity": "euclidean"},
    "S512 euclidean": {"dictionary_size": 512, "top_k": None, "slot_dropout": 0.0, "similarity": "euclidean"},
    "S4096 K32 drop auto": {"dictionary_size": 4096, "top_k": 32, "slot_dropout": 0.5, "similarity": "auto"},
    "S4096 K32 drop euclidean": {"dictionary_size": 4096, "top_k": 32, "slot_dropout": 0.5,
                                 "similarity": "euclidean"},
    "S4096 K32 euclidean": {"dictionary_size": 4096, "top_k": 32, "slot_dropout": 0.0, "similarity": "euclidean"},
    "defaults": {},
    "defaults alone": {"vanilla_fallback": False},  # the network with neighbours kept whatever it validates
    "defaults loo": {"leave_one_out": True},
    "defaults fixed": {"learn_dictionary": False},
    "defaults K128 last": {"top_k": 128, "adapt": "last"},
    "defaults layer": {"step_size": "layer"},
    "vanilla ema": {"dictionary_size": 0, "ema_decay": 0.99},  # a training setting both share: weight averaging
    "defaults ema": {"ema_decay": 0.99},
    "defaults full": {"top_k": None},  # full attention, which the regression rule ties with top-128
    "vanilla refined": {"dictionary_size": 0, "refine_factor": 0.1},  # a second phase, both share
    "defaults refined": {"refine_factor": 0.1},
    "vanilla periodic": {"dictionary_size": 0, "head": PeriodicMLPHead},  # periodic embeddings, both alike
    "defaults periodic": {"head": PeriodicMLPHead},
}


CHOSEN_ON = ["digits", "synthetic-20", "synthetic-60"]  # the default --tables: those the defaults were chosen on


def tables() -> dict:
    digits = load_digits(return_X_y=True)
    return {
        "digits": digits,
        "synthetic-20": make_classification(2000, 20, n_informative=10, n_classes=4, n_clusters_per_class=2,
                                            random_state=0),
        "synthetic-60": make_classification(2000, 60, n_informative=20, n_classes=5, n_clusters_per_class=3,
                                            random_state=1),
        "breast-cancer": load_breast_cancer(return_X_y=True),
        "wine": load_wine(return_X_y=True),
        "iris": load_iris(return_X_y=True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--tables", nargs="+", default=CHOSEN_ON, choices=list(tables()))
    parser.add_argument("--threads", type=int, default=1)
    add_options(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    with Record(args.json, args.out) as record:  # written once every table has run: a file is untouched until then
        record.figures = _compare(args)


def _compare(args) -> dict:
    """Every candidate on every table's folds (``cross_validate``'s, as ``regress --task classification``), printed
    table by table; each fold's accuracy, the network it kept and the validation losses it chose by."""
    results, kept, losses = {}, {}, {}  # per table and candidate, fold by fold: accuracy, network kept, its evidence
    classifier = available_methods(CLASSIFICATION)["meta_neighborhoods"]
    methods = {c: with_params(classifier, **CANDIDATES[c]) for c in args.candidates}
    for name, (X, y) in ((name, table) for name, table in tables().items() if name in args.tables):
        table = Table(name, np.asarray(X, dtype=float), np.asarray(y, dtype=float), None, name)
        cv = cross_validate(table, methods, folds=args.folds, seed=0, seeds=args.seeds, params={}, progress=False,
                            task=CLASSIFICATION)
        scores = results[name] = {c: [1.0 - error for error in errors] for c, errors in cv["folds"].items()}
        kept[name], losses[name] = cv["kept"], cv["validation_losses"]
        print(f"\n{name}: accuracy, {args.folds}-fold CV x {args.seeds} seeds")
        print(f"{'candidate':<26}{'mean':>8}{'- vanilla':>11}{'wins':>7}{'p':>8}")
        for c, s in scores.items():
            base = scores.get("vanilla", s)
            p = corrected_t_test(s, base, args.folds) if c != "vanilla" else None
            print(f"{c:<26}{np.mean(s):>8.4f}{np.mean(s) - np.mean(base):>+11.4f}"
                  f"{int(np.sum(np.array(s) > np.array(base))):>7}{shown_p(p):>8}", flush=True)
    return {**results, "kept": kept, "validation_losses": losses}

if __name__ == "__main__":
    main()
