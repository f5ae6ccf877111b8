"""Table 2 and the ablations: k-fold MSE of kNN, the vanilla MLP, Meta-Neighborhoods and gradient boosting.

Every method sees the same folds; the target is standardised with each training fold's mean and std and
the MSE is measured on that scale, so the numbers are comparable with the paper's Table 2.
"""

from __future__ import annotations

import math
import sys
import time
import warnings

import numpy as np
from scipy.stats import ttest_rel
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.metrics import mean_squared_error
from sklearn.model_selection import GridSearchCV, KFold, train_test_split
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from .. import __version__
from ..datasets.files import DataFileError
from ..datasets.tables import Table, available_tables, load_table
from ..estimators import MetaNeighborhoodsRegressor
from ..standardise import standardiser
from ..plots import ablation_figure, fold_errors_figure
from ..io import markdown_table, prepare_out_dir, write_json, write_text
from ..validation import ConfigError

REFERENCE = "meta_neighborhoods"
KNN_NEIGHBOURS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50)
KNN_INNER_FOLDS = 5
SEARCH_DEPTHS = (2, 3, 4, 5)  # hidden layers, as the paper's architecture search
SEARCH_WIDTHS = (32, 64, 128, 256)  # units in every hidden layer
SEARCH_VALIDATION = 0.2
ABLATION_TYPES = {
    "dictionary_size": int, "temperature": float, "inner_steps": int,
    "step_size": str, "similarity": str, "adapt": str,
}
LOG_SCALE_PARAMS = ("dictionary_size", "temperature")  # values that span orders of magnitude


# ---------------------------------------------------------------------------------------------------
# Methods: factory(seed=, n_train=, params=) -> unfitted estimator; params only reach the MLP estimators


def _knn(*, seed: int, n_train: int, params: dict):
    """k by inner CV; k never exceeds the smallest inner training split, where kNN would fail."""
    inner_train = n_train - math.ceil(n_train / KNN_INNER_FOLDS)
    grid = [k for k in KNN_NEIGHBOURS if k <= inner_train]
    pipeline = Pipeline([("scale", StandardScaler()), ("knn", KNeighborsRegressor())])
    return GridSearchCV(pipeline, {"knn__n_neighbors": grid}, scoring="neg_mean_squared_error",
                        cv=KFold(KNN_INNER_FOLDS, shuffle=True, random_state=seed))


def _vanilla(*, seed: int, n_train: int, params: dict):
    """The same MLP as Meta-Neighborhoods without neighbours, whatever ``params`` say about the dictionary."""
    return MetaNeighborhoodsRegressor(**{"random_state": seed, **params, "dictionary_size": 0})


def _meta_neighborhoods(*, seed: int, n_train: int, params: dict):
    return MetaNeighborhoodsRegressor(**{"random_state": seed, **params})


def _hist_gradient_boosting(*, seed: int, n_train: int, params: dict):
    return HistGradientBoostingRegressor(random_state=seed)


METHODS = {
    "knn": _knn,
    "vanilla": _vanilla,
    "meta_neighborhoods": _meta_neighborhoods,
    "hist_gradient_boosting": _hist_gradient_boosting,
}


# ---------------------------------------------------------------------------------------------------
# Cross-validation, architecture search, statistics


def _standardised_fold(table: Table, train: np.ndarray, test: np.ndarray):
    """Scale the target by the training fold only, so test rows never leak into the scale of the error."""
    mean, std = (float(v[0]) for v in standardiser(table.y[train][:, None]))  # no overflow near the float limit
    return table.X[train], (table.y[train] - mean) / std, table.X[test], (table.y[test] - mean) / std


def _fit_mse(estimator, X_train, y_train, X_test, y_test) -> float:
    return float(mean_squared_error(y_test, estimator.fit(X_train, y_train).predict(X_test)))


def search_architecture(X: np.ndarray, y: np.ndarray, *, seed: int, params: dict) -> dict:
    """The paper's search: every depth x width for the vanilla MLP, judged on an inner 80/20 split."""
    X_fit, X_valid, y_fit, y_valid = train_test_split(X, y, test_size=SEARCH_VALIDATION, random_state=seed)
    started, scores = time.perf_counter(), {}
    for depth in SEARCH_DEPTHS:
        for width in SEARCH_WIDTHS:
            layers = (width,) * depth
            model = _vanilla(seed=seed, n_train=len(X_fit), params={**params, "hidden_layer_sizes": layers})
            scores[layers] = _fit_mse(model, X_fit, y_fit, X_valid, y_valid)
    best = min(scores, key=scores.get)
    return {
        "hidden_layer_sizes": list(best),
        "validation_mse": {"x".join(map(str, layers)): mse for layers, mse in scores.items()},
        "seconds": round(time.perf_counter() - started, 2),
    }


def cross_validate(table: Table, methods: dict, *, folds: int, seed: int, params: dict, search: bool = False,
                   progress: bool = True) -> dict:
    """One CV loop for every experiment: the same folds for every method, per-fold MSE and fit+predict time."""
    if folds < 2:
        raise ConfigError(f"cross-validation needs at least 2 folds, got {folds}")
    smallest = len(table.y) - math.ceil(len(table.y) / folds)  # rows in the smallest training fold
    if smallest < (KNN_INNER_FOLDS if "knn" in methods else 2):
        raise ValueError(f"{table.name}: {len(table.y)} rows are too few for {folds}-fold cross-validation: a training "
                         f"fold would hold {smallest} rows"
                         + (f", and kNN's inner {KNN_INNER_FOLDS}-fold search needs {KNN_INNER_FOLDS}" if "knn" in
                            methods else ""))
    errors = {name: [] for name in methods}
    seconds = dict.fromkeys(methods, 0.0)
    architectures = []
    splits = KFold(folds, shuffle=True, random_state=seed).split(table.X)
    with tqdm(total=folds * len(methods), desc=table.name, disable=not progress) as bar:
        for fold, (train, test) in enumerate(splits):
            X_train, y_train, X_test, y_test = _standardised_fold(table, train, test)
            fold_params = dict(params)
            if search:
                bar.set_postfix_str(f"fold {fold + 1}: architecture search")
                choice = search_architecture(X_train, y_train, seed=seed, params=params)
                architectures.append({"fold": fold, **choice})
                fold_params["hidden_layer_sizes"] = tuple(choice["hidden_layer_sizes"])
            for name, factory in methods.items():
                bar.set_postfix_str(f"fold {fold + 1}: {name}")
                started = time.perf_counter()
                model = factory(seed=seed, n_train=len(train), params=fold_params)
                errors[name].append(_fit_mse(model, X_train, y_train, X_test, y_test))
                seconds[name] += time.perf_counter() - started
                bar.update()
    return {
        "folds": errors,
        "mean": {name: float(np.mean(e)) for name, e in errors.items()},
        "std": {name: float(np.std(e)) for name, e in errors.items()},  # over folds, ddof=0
        "seconds": {name: round(s, 2) for name, s in seconds.items()},
        "architectures": architectures,
    }


def paired_tests(fold_errors: dict[str, list[float]], reference: str = REFERENCE) -> dict[str, float | None]:
    """Paired t-test p-value of ``reference`` against every other method over the same folds.

    None (JSON null) where no test is defined: fewer than two folds, or no difference at all.
    """
    ours = np.asarray(fold_errors[reference], dtype=float)
    p_values: dict[str, float | None] = {}
    for name, errors in fold_errors.items():
        if name == reference:
            continue
        theirs = np.asarray(errors, dtype=float)
        p_value = None
        if len(ours) >= 2 and not np.array_equal(ours, theirs):
            with warnings.catch_warnings():  # constant differences warn about precision, and give p = 0
                warnings.simplefilter("ignore", RuntimeWarning)
                p = float(ttest_rel(ours, theirs).pvalue)
            p_value = None if math.isnan(p) else p
        p_values[name] = p_value
    return p_values


# ---------------------------------------------------------------------------------------------------
# Reports


def _number(x: float) -> str:
    """Four significant digits, trailing zeros kept so that a column of errors lines up."""
    return f"{x:#.4g}".rstrip(".")


def _mse(mean: float, std: float) -> str:
    return f"{_number(mean)} ± {_number(std)}"


def _p(p: float | None) -> str:
    return "—" if p is None else f"{p:.3g}"


def _results_markdown(results: dict) -> str:
    rows = [[name, _mse(results["mean"][name], results["std"][name]), _p(results["p_values"].get(name))]
            for name in results["folds"]]
    config = results["config"]
    title = (f"# {results['dataset']}: {config['folds']}-fold MSE on the standardised target "
             f"(n = {results['n']}, d = {results['d']}, seed {config['seed']})\n\n")
    return title + markdown_table(["method", "MSE (mean ± std)", "p-value (MN vs method)"], rows)


def _estimator_config(params: dict, seed: int, varied: dict) -> dict:
    """The Meta-Neighborhoods estimator's full parameters; ``varied`` says which ones the run set elsewhere."""
    return {**_meta_neighborhoods(seed=seed, n_train=0, params=params).get_params(), **varied}


def run_regression(table: Table, out, folds: int = 5, seed: int = 0, search: bool = False, methods: dict = METHODS,
                   estimator_params: dict | None = None, progress: bool = True) -> dict:
    """Table 2 for one data set: writes results.json, results.md and folds.png into ``out``.

    ``estimator_params`` override the estimators' defaults for vanilla and Meta-Neighborhoods alike
    (vanilla keeps ``dictionary_size=0``); with ``search=True`` the searched architecture overrides theirs.
    """
    if REFERENCE not in methods:
        raise ConfigError(f"methods must include {REFERENCE!r}, the reference of the paired tests")
    out, params = prepare_out_dir(out), dict(estimator_params or {})
    cv = cross_validate(table, methods, folds=folds, seed=seed, params=params, search=search, progress=progress)
    p_values = paired_tests(cv["folds"])
    results = {
        "dataset": table.name, "n": int(table.X.shape[0]), "d": int(table.X.shape[1]), "metric": "mse",
        "folds": cv["folds"], "mean": cv["mean"], "std": cv["std"],
        "p_values": p_values, "p_value_vs_vanilla": p_values.get("vanilla"),
        "seconds": cv["seconds"],
        **({"architectures": cv["architectures"]} if search else {}),
        "config": {
            "folds": folds, "seed": seed, "search": search, "estimator_params": params,
            "version": __version__,
            "estimator": _estimator_config(
                params, seed, {"hidden_layer_sizes": "searched per fold, see architectures"} if search else {}),
        },
    }
    write_json(out / "results.json", results)
    write_text(out / "results.md", _results_markdown(results))
    fold_errors_figure(out / "folds.png", cv["folds"], f"{table.name}: MSE per fold (standardised target)")
    return results


def _summary_row(results: dict) -> dict:
    mean, p_values = results["mean"], results["p_values"]
    rivals = [mean[m] for m in ("vanilla", "knn") if m in mean]
    return {
        "n": results["n"], "d": results["d"], "mean": mean, "std": results["std"],
        "p_value_vs_vanilla": p_values.get("vanilla"), "p_value_vs_knn": p_values.get("knn"),
        "beats_both": bool(rivals) and all(mean[REFERENCE] < m for m in rivals),
    }


def _summary_markdown(rows: dict, methods: list[str], skipped: dict) -> str:
    header = ["data set", "n", "d", *methods, "p MN vs vanilla", "p MN vs kNN", "MN best"]
    lines = [[name, str(r["n"]), str(r["d"]), *(_mse(r["mean"][m], r["std"][m]) for m in methods),
              _p(r["p_value_vs_vanilla"]), _p(r["p_value_vs_knn"]), "✓" if r["beats_both"] else ""]
             for name, r in rows.items()]
    text = ("# Regression: k-fold MSE on the standardised target (mean ± std over folds)\n\n"
            "MN best: Meta-Neighborhoods has a lower mean MSE than both vanilla and kNN.\n\n")
    text += markdown_table(header, lines)
    if skipped:
        text += "\nSkipped (data files missing): " + ", ".join(skipped) + "\n"
    return text


def run_regression_all(names: list[str], out, data_dir=None, methods: dict = METHODS, **options) -> dict:
    """Table 2 for several registered data sets into ``out/<name>/``, plus summary.md / summary.json.

    A data set whose files are missing is skipped with a note, so one absent download does not stop the rest.
    ``options`` are passed to ``run_regression``. A misspelt name fails before any data set is run.
    """
    unknown = [name for name in names if name not in available_tables()]
    if unknown:
        known = ", ".join(available_tables())
        raise ConfigError(f"unknown table(s) {', '.join(map(repr, unknown))}; known tables: {known}")
    out = prepare_out_dir(out)
    rows, skipped = {}, {}
    for name in names:
        try:
            table = load_table(name, data_dir)
        except DataFileError as error:
            print(f"skipping {name}: {error}", file=sys.stderr)
            skipped[name] = str(error)
            continue
        rows[name] = _summary_row(run_regression(table, out / name, methods=methods, **options))
    summary = {"datasets": rows, "skipped": skipped}
    write_json(out / "summary.json", summary)
    write_text(out / "summary.md", _summary_markdown(rows, list(methods), skipped))
    return summary


# ---------------------------------------------------------------------------------------------------
# Ablations


def ablation_values(param: str, values) -> list:
    """Command-line strings (or Python values) as the estimator's type; ``none`` means the default temperature."""
    if param not in ABLATION_TYPES:
        raise ConfigError(f"unknown ablation parameter {param!r}; choose one of {', '.join(ABLATION_TYPES)}")
    kind, converted = ABLATION_TYPES[param], []
    for value in values:
        if param == "temperature" and (value is None or str(value).lower() == "none"):
            converted.append(None)
            continue
        try:
            converted.append(kind(value))
        except ValueError:
            raise ConfigError(f"{param} values must be of type {kind.__name__}, got {value!r}") from None
    if not converted:
        raise ConfigError(f"no values given for {param}")
    if len(set(converted)) != len(converted):
        raise ConfigError(f"{param} values repeat: {list(values)}")
    return converted


def _with_value(param: str, value):
    """Meta-Neighborhoods with one parameter fixed, as a method factory for ``cross_validate``."""
    def factory(*, seed: int, n_train: int, params: dict):
        return _meta_neighborhoods(seed=seed, n_train=n_train, params={**params, param: value})
    return factory


def run_ablation(table: Table, out, param: str, values, folds: int = 5, seed: int = 0, progress: bool = True,
                 estimator_params: dict | None = None) -> dict:
    """Meta-Neighborhoods' CV error for each value of one parameter (same folds); writes ablation.json/.md/.png."""
    values = ablation_values(param, values)
    out, params = prepare_out_dir(out), dict(estimator_params or {})
    methods = {f"{param}={value}": _with_value(param, value) for value in values}
    cv = cross_validate(table, methods, folds=folds, seed=seed, params=params, progress=progress)
    results = {
        "dataset": table.name, "n": int(table.X.shape[0]), "d": int(table.X.shape[1]), "metric": "mse",
        "param": param, "values": values,
        "folds": list(cv["folds"].values()), "mean": list(cv["mean"].values()), "std": list(cv["std"].values()),
        "seconds": list(cv["seconds"].values()),
        "config": {
            "folds": folds, "seed": seed, "estimator_params": params, "version": __version__,
            "estimator": _estimator_config(params, seed, {param: "ablated, see values"}),
        },
    }
    write_json(out / "ablation.json", results)
    rows = [[str(v), _mse(m, s)] for v, m, s in zip(values, results["mean"], results["std"])]
    title = f"# {table.name}: Meta-Neighborhoods ablation of {param} ({folds}-fold MSE, standardised target)\n\n"
    write_text(out / "ablation.md", title + markdown_table([param, "MSE (mean ± std)"], rows))
    ablation_figure(out / "ablation.png", param, values, results["mean"], results["std"],
                    log_x=param in LOG_SCALE_PARAMS, title=f"{table.name}: {param}")
    return results
