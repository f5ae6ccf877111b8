"""The protocol of Table 2 and the ablations: the methods, and repeated k-fold CV on identical folds.

Every method sees the same folds. In regression the target is standardised with each training fold's mean and std
and the MSE is measured on that scale, so the numbers are comparable with the paper's Table 2; in classification the
folds are stratified and the error is the share of test rows misclassified. The whole CV is repeated over seeds,
each with its own fold shuffle and model seed: one seed is an anecdote.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import logging
import math
import time
import warnings
from contextlib import contextmanager

import numpy as np
import torch
from sklearn.base import is_classifier
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import mean_squared_error
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold, train_test_split
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from ..callbacks import bar_disabled
from ..config import CLASSIFICATION, REGRESSION
from ..datasets.tables import Table
from ..estimator_settings import check_before_fit
from ..estimators import MetaNeighborhoodsClassifier, MetaNeighborhoodsRegressor
from ..estimator_rows import standardiser
from ..validation import ConfigError, check_int, check_option, check_seed, check_threads
from .class_labels import ByClassWherePossible, class_labels, stratifiable

LOGGER = logging.getLogger(__name__)

KNN_NEIGHBOURS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50)
KNN_INNER_FOLDS = 5
SEARCH_DEPTHS = (2, 3, 4, 5)  # hidden layers, as the paper's architecture search
SEARCH_WIDTHS = (32, 64, 128, 256)  # units in every hidden layer
SEARCH_VALIDATION = 0.2
SEARCH = "architecture search"  # the name the search's fits are counted under in ``unconverged``
REFERENCE = "meta_neighborhoods"  # the method a table run tests against every other
BASELINE = "vanilla"  # what the ratios are relative to
ESTIMATORS = {REGRESSION: MetaNeighborhoodsRegressor, CLASSIFICATION: MetaNeighborhoodsClassifier}  # by task
METRICS = {REGRESSION: "mse", CLASSIFICATION: "error_rate"}  # a fold's error, lower better, by task


# ---------------------------------------------------------------------------------------------------
# Methods: factory(seed=, n_train=, params=, task=) -> unfitted estimator; params only reach the MLP estimators


def _knn(*, seed: int, n_train: int, params: dict, task: str = REGRESSION):
    """k by inner CV; k never exceeds the smallest inner training split, where kNN would fail."""
    inner_train = n_train - math.ceil(n_train / KNN_INNER_FOLDS)
    grid = [k for k in KNN_NEIGHBOURS if k <= inner_train]
    knn, scoring, inner = ((KNeighborsRegressor, "neg_mean_squared_error", KFold(KNN_INNER_FOLDS, shuffle=True,
                                                                                 random_state=seed))
                           if task == REGRESSION else
                           (KNeighborsClassifier, "accuracy", ByClassWherePossible(KNN_INNER_FOLDS, seed)))
    pipeline = Pipeline([("scale", StandardScaler()), ("knn", knn())])
    return GridSearchCV(pipeline, {"knn__n_neighbors": grid}, scoring=scoring, cv=inner)


def _vanilla(*, seed: int, n_train: int, params: dict, task: str = REGRESSION):
    """The same MLP as Meta-Neighborhoods without neighbours, whatever ``params`` say about the dictionary."""
    return ESTIMATORS[task](**{"random_state": seed, **params, "dictionary_size": 0})


def meta_neighborhoods_estimator(*, seed: int, n_train: int, params: dict, task: str = REGRESSION):
    return ESTIMATORS[task](**{"random_state": seed, **params})


def with_params(factory, **extra):
    """``factory`` (a method of ``cross_validate``) with ``extra`` over the run's parameters: an ablated value, a
    candidate setting, a head that every network of a comparison takes."""
    def wrapped(*, seed: int, n_train: int, params: dict):
        return factory(seed=seed, n_train=n_train, params={**params, **extra})
    return wrapped


def _hist_gradient_boosting(*, seed: int, n_train: int, params: dict, task: str = REGRESSION):
    model = HistGradientBoostingRegressor if task == REGRESSION else HistGradientBoostingClassifier
    return model(random_state=seed)


def _lightgbm(*, seed: int, n_train: int, params: dict, task: str = REGRESSION):
    import lightgbm

    model = lightgbm.LGBMRegressor if task == REGRESSION else lightgbm.LGBMClassifier
    return model(random_state=seed, n_jobs=1, verbose=-1)


def _realmlp_td(*, seed: int, n_train: int, params: dict, task: str = REGRESSION):
    """pytabkit's RealMLP with its tuned defaults (TD): robust scaling, numerical embeddings, its own schedule."""
    import pytabkit

    model = pytabkit.RealMLP_TD_Regressor if task == REGRESSION else pytabkit.RealMLP_TD_Classifier
    return model(random_state=seed, device="cpu", n_threads=1, verbosity=0)


TABLE_METHODS = {
    "knn": _knn,
    "vanilla": _vanilla,
    "meta_neighborhoods": meta_neighborhoods_estimator,
    "hist_gradient_boosting": _hist_gradient_boosting,
}
BASELINES = {"lightgbm": ("lightgbm", _lightgbm), "realmlp_td": ("pytabkit", _realmlp_td)}  # name: (package, factory)


def available_methods(task: str = REGRESSION) -> dict:
    """TABLE_METHODS, plus each optional baseline whose package imports (``pip install -e '.[baselines]'``), for
    ``task`` (their factories bound to it).

    Imported here, not only looked up: a package that is installed but broken (a missing shared library) is
    skipped with a warning before any fit, not found at the first fold's baseline after the others trained.
    """
    methods = {**TABLE_METHODS,
               **{name: factory for name, (package, factory) in BASELINES.items() if _imports(name, package)}}
    check_option("task", task, ESTIMATORS)
    return {name: functools.partial(factory, task=task) for name, factory in methods.items()}


def _imports(name: str, package: str) -> bool:
    if importlib.util.find_spec(package) is None:
        return False
    try:
        importlib.import_module(package)
    except (ImportError, OSError) as error:
        LOGGER.warning("skipping the %s baseline: %s is installed but does not import (%s)", name, package, error)
        return False
    return True


# ---------------------------------------------------------------------------------------------------
# Cross-validation and architecture search


def standardised_fold(table: Table, train: np.ndarray, test: np.ndarray):
    """Scale the target by the training fold only, so test rows never leak into the scale of the error."""
    mean, std = (float(v[0]) for v in standardiser(table.y[train][:, None], target=True))  # no overflow near 1e308
    return table.X[train], (table.y[train] - mean) / std, table.X[test], (table.y[test] - mean) / std


def fold_data(table: Table, train: np.ndarray, test: np.ndarray, labels: np.ndarray | None = None):
    """(X_train, y_train, X_test, y_test) of a fold: a regression's target standardised (``standardised_fold``),
    or the class ``labels`` (``class_labels``) as they are."""
    if labels is None:
        return standardised_fold(table, train, test)
    return table.X[train], labels[train], table.X[test], labels[test]


def _fit_error(estimator, X_train, y_train, X_test, y_test, task: str = REGRESSION) -> float:
    """The ``task``'s error (``METRICS``) on the test rows of the estimator fit on the training rows."""
    predicted = estimator.fit(X_train, y_train).predict(X_test)
    return float(mean_squared_error(y_test, predicted) if task == REGRESSION else np.mean(predicted != y_test))


def search_architecture(X: np.ndarray, y: np.ndarray, *, seed: int, params: dict, task: str = REGRESSION) -> dict:
    """The paper's search: every depth x width for the vanilla MLP, judged on an inner 80/20 split (stratified by
    class in classification, where the classes allow it). A classifier's error rate ties often on a small split,
    so ties go to the lower log-loss."""
    by_class = task != REGRESSION and stratifiable(y, round(1 / SEARCH_VALIDATION))  # else a class may break it
    X_fit, X_valid, y_fit, y_valid = train_test_split(X, y, test_size=SEARCH_VALIDATION, random_state=seed,
                                                      stratify=y if by_class else None)
    started, scores, losses = time.perf_counter(), {}, {}
    for depth in SEARCH_DEPTHS:
        for width in SEARCH_WIDTHS:
            layers = (width,) * depth
            model = _vanilla(seed=seed, n_train=len(X_fit), params={**params, "hidden_layer_sizes": layers}, task=task)
            scores[layers] = _fit_error(model, X_fit, y_fit, X_valid, y_valid, task)
            if task != REGRESSION:
                losses[layers] = _log_loss(model, X_valid, y_valid)
    best = min(scores, key=lambda layers: (scores[layers], losses.get(layers, 0.0)))
    named = {f"validation_{METRICS[task]}": scores, **({"validation_log_loss": losses} if losses else {})}
    return {
        "hidden_layer_sizes": list(best),
        **{key: {"x".join(map(str, layers)): value for layers, value in by_layers.items()}
           for key, by_layers in named.items()},
        "seconds": round(time.perf_counter() - started, 2),
    }


def _log_loss(classifier, X: np.ndarray, y: np.ndarray) -> float:
    """The mean negative log-probability of each row's class; a class the fit never saw, or a NaN, has none
    (clipped to 1e-15): the record is JSON, and the search's order needs a number."""
    column = {label: j for j, label in enumerate(classifier.classes_.tolist())}
    proba = classifier.predict_proba(X)
    p = np.array([proba[i, column[label]] if label in column else 0.0 for i, label in enumerate(y.tolist())])
    return float(-np.mean(np.log(np.clip(np.nan_to_num(p, nan=0.0), 1e-15, 1.0))))  # a diverged network's: none


def subset_rows(table: Table, max_rows: int | None, seed: int) -> Table:
    """At most ``max_rows`` rows of the table, drawn at random with ``seed``: a bound on the cost of a run."""
    if max_rows is None or len(table.y) <= max_rows:
        return table
    rows = np.sort(np.random.default_rng(seed).choice(len(table.y), size=max_rows, replace=False))
    return dataclasses.replace(table, X=table.X[rows], y=table.y[rows])


def _check_folds(folds: int) -> None:
    check_int("folds", folds)
    if folds < 2:
        raise ConfigError(f"cross-validation needs at least 2 folds, got {folds}", "folds")


def _check_size(table: Table, methods: dict, folds: int) -> None:
    _check_folds(folds)
    if folds > len(table.y):
        raise ConfigError(f"{table.name}: {len(table.y)} row{'s' * (len(table.y) != 1)} cannot make {folds} folds: a "
                          "test fold needs a row", "folds")
    smallest = len(table.y) - math.ceil(len(table.y) / folds)  # rows in the smallest training fold
    if smallest < (KNN_INNER_FOLDS if "knn" in methods else 2):
        raise ConfigError(f"{table.name}: {len(table.y)} rows are too few for {folds}-fold cross-validation: a "
                          f"training fold would hold {smallest} row{'s' * (smallest != 1)}"
                          + (f", and kNN's inner {KNN_INNER_FOLDS}-fold search needs {KNN_INNER_FOLDS}" if "knn" in
                             methods else ""), "folds")


def repeated_folds(n_rows: int, folds: int, seed: int, seeds: int, labels: np.ndarray | None = None):
    """(seed, fold, train, test) of ``seeds`` repeats of k-fold CV, seed-major: repeat r shuffles with seed + r,
    and the models of that repeat are seeded with it too. Entry r * folds + f of every error list is (r, f). With
    class ``labels`` the folds are stratified: each holds each class's share of the rows."""
    split = KFold if labels is None else StratifiedKFold
    for repeat_seed in range(seed, seed + seeds):
        with warnings.catch_warnings():  # a class smaller than the folds: class_labels.checked_classes says it
            warnings.filterwarnings("ignore", "The least populated class", UserWarning)
            splits = list(split(folds, shuffle=True, random_state=repeat_seed).split(np.empty((n_rows, 1)), labels))
        for fold, (train, test) in enumerate(splits):
            yield repeat_seed, fold, train, test


def cross_validate(table: Table, methods: dict, *, folds: int, seed: int, params: dict, seeds: int = 1,
                   search: bool = False, progress: bool = True, task: str = REGRESSION) -> dict:
    """One CV loop for every experiment: the same folds for every method (``methods`` made for ``task``, as
    ``available_methods`` gives them), per-fold error (``METRICS``) and fit+predict time, for each method whose
    estimator reports them (the vanilla fallback) the network each fold kept and the validation losses it chose by,
    in classification each fold's log-loss of the methods that give probabilities, the dictionary size each fit had
    (capped at its training rows), and how many fits stopped at ``max_epochs`` before early stopping ended them
    (``unconverged``)."""
    check_int("seeds", seeds)
    _check_size(table, methods, folds)
    errors, kept, losses, sizes, unconverged, said = {name: [] for name in methods}, {}, {}, {}, {}, set()
    log_losses = {}
    seconds = dict.fromkeys(methods, 0.0)
    # The first optimiser a process makes imports torch._dynamo (about 1.5 s): made here, no method's seconds hold it.
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])
    architectures, fold_seeds = [], []
    check_option("task", task, METRICS)
    labels = None if task == REGRESSION else class_labels(table)
    with tqdm(total=seeds * folds * len(methods), desc=table.name, disable=bar_disabled(progress)) as bar:
        for repeat_seed, fold, train, test in repeated_folds(len(table.y), folds, seed, seeds, labels):
            X_train, y_train, X_test, y_test = fold_data(table, train, test, labels)
            fold_params, where = dict(params), f"seed {repeat_seed} fold {fold + 1}"
            fold_seeds.append(repeat_seed)
            if search:
                bar.set_postfix_str(f"{where}: architecture search")
                with _counting_unconverged(unconverged, SEARCH, said):
                    choice = search_architecture(X_train, y_train, seed=repeat_seed, params=params, task=task)
                architectures.append({"seed": repeat_seed, "fold": fold, **choice})
                fold_params["hidden_layer_sizes"] = tuple(choice["hidden_layer_sizes"])
            for name, factory in methods.items():
                bar.set_postfix_str(f"{where}: {name}")
                started = time.perf_counter()
                model = factory(seed=repeat_seed, n_train=len(train), params=fold_params)
                with _counting_unconverged(unconverged, name, said):
                    errors[name].append(_fit_error(model, X_train, y_train, X_test, y_test, task))
                if hasattr(model, "selected_"):
                    kept.setdefault(name, []).append(model.selected_)
                if hasattr(model, "validation_losses_"):
                    losses.setdefault(name, []).append(dict(model.validation_losses_))
                if hasattr(model, "network_"):
                    sizes.setdefault(name, []).append(model.network_["dictionary_size"])
                seconds[name] += time.perf_counter() - started
                if task != REGRESSION and hasattr(model, "predict_proba"):  # not timed: a measure, not the method
                    log_losses.setdefault(name, []).append(_log_loss(model, X_test, y_test))
                bar.update()
    return {
        "folds": errors, "kept": kept, "validation_losses": losses, "fold_seeds": fold_seeds,
        "fold_numbers": list(range(folds)) * seeds,
        "seconds": {name: round(s, 2) for name, s in seconds.items()},
        "architectures": architectures, "unconverged": unconverged, "dictionary_sizes": sizes,
        "log_loss": log_losses,
    }


@contextmanager
def _counting_unconverged(counts: dict, name: str, said: set):
    """Count under ``name`` the fits inside that stopped at ``max_epochs`` before early stopping (their
    ``ConvergenceWarning``), so that a run capped by ``--max-epochs`` says so once, not once per fit; every other
    warning passes on, once a run (``said``: those passed on already), not once for every fit of every fold."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        if issubclass(warning.category, ConvergenceWarning):
            counts[name] = counts.get(name, 0) + 1
        elif (warning.category, str(warning.message)) not in said:
            said.add((warning.category, str(warning.message)))
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def protocol_options(folds: int, seed: int, seeds: int, max_rows: int | None, threads: int | None = None) -> dict:
    """The protocol of a run, checked before anything is written. ``threads``: torch's CPU threads for the run
    (None: this process's count), recorded with the rest, since the network with neighbours trains on sums
    rounded in an order that depends on them: a rerun matches the run fold for fold only on as many."""
    _check_folds(folds)
    seeds = check_int("seeds", seeds)
    seed = check_seed("seed", seed, limit=2**32)  # scikit-learn's generators take seeds below 2**32: seed + repeat
    if seed + seeds > 2**32:
        raise ConfigError(f"seeds must be at most {2**32 - seed} from seed {seed} (the last repeat's seed, seed + "
                          f"seeds - 1, must be below 2**32), got {seeds}", "seeds")
    if max_rows is not None:
        max_rows = check_int("max_rows", max_rows)
    threads = check_threads("threads", threads)
    return {"folds": int(folds), "seed": seed, "seeds": seeds, "max_rows": max_rows,  # checked: plain ints, for JSON
            "threads": torch.get_num_threads() if threads is None else threads}


def check_method_settings(methods: dict, params: dict, n_rows: int, n_features: int,
                          task: str = REGRESSION) -> None:
    """The settings ``params`` give the estimators of ``methods`` that take them (Meta-Neighborhoods' and vanilla's,
    those with a dictionary), checked as their fit on ``n_rows`` x ``n_features`` would check them, before a folder
    is claimed: a refused setting leaves nothing behind, and fails in a second, not after the methods before it
    trained. In classification, every method must be a classifier (``available_methods(task)`` gives them)."""
    for name, factory in methods.items():
        estimator = factory(seed=0, n_train=n_rows, params=params)
        if task != REGRESSION and not is_classifier(estimator):
            raise ConfigError(f"method {name!r} gives a {type(estimator).__name__}, not a classifier: a {task} run "
                              f"takes the methods of available_methods({task!r})", "methods")
        if hasattr(estimator, "dictionary_size"):
            check_before_fit(estimator, n_rows, n_features)


def protocol_rows(table: Table, methods: dict, options: dict) -> Table:
    """The rows a run of ``protocol_options`` uses (at most ``max_rows``), checked against its folds before
    anything is written."""
    used = subset_rows(table, options["max_rows"], options["seed"])
    _check_size(used, methods, options["folds"])
    return used
