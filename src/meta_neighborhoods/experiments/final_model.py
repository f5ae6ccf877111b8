"""A final model: one estimator fit on a whole table and saved in a folder beside the record of its fit
(``meta-neighborhoods fit``), and a saved estimator's predictions for the rows of a CSV file
(``meta-neighborhoods predict``). Cross-validation says how well a setting does; this is the model one then uses."""

from __future__ import annotations

import logging
import os
import re
import time
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch

from .. import checkpoint, export
from ..config import CLASSIFICATION, REGRESSION
from ..datasets.csv_tables import DECIMALS, SEPARATORS, load_csv_rows, load_csv_text
from ..datasets.tables import Table
from ..datasets.text_tables import text_numbers
from ..estimator_settings import check_before_fit
from ..io import LOCK, atomic_write, claimed, reading, replaceable, write_json
from ..persistence import FOLDER_MODEL as MODEL, saved_stem
from ..run_files import ABLATION_JSON, FIT_JSON as RECORD, FIT_KIND, RESULTS_JSON, SUMMARY_JSON
from ..training import resolve_device, torch_threads
from ..validation import ConfigError, check_int, check_option, check_seed, check_threads
from .class_labels import checked_classes
from .cross_validation import ESTIMATORS, subset_rows
from .table_records import run_config

LOGGER = logging.getLogger(__name__)


def fit_final(table: Table, out, task: str = REGRESSION, seed: int = 0, max_rows: int | None = None,
              threads: int | None = None, estimator_params: dict | None = None, overwrite: bool = False,
              progress: bool = True) -> dict:
    """Fit the ``task``'s estimator on the rows of ``table`` (at most ``max_rows``, drawn with ``seed``) and write
    it into ``out`` (``model.json`` and its tensors, as ``save`` writes them) with ``fit.json``, the record of the
    fit: its settings, the table's digest, the epochs and best loss, versions and command. A folder that holds
    an earlier fit is refused unless ``overwrite``; every setting is checked before the folder is claimed."""
    check_option("task", task, ESTIMATORS)
    options = {"task": task, "seed": check_seed("seed", seed, limit=2**32),
               "max_rows": None if max_rows is None else check_int("max_rows", max_rows)}
    params = dict(estimator_params or {})
    twice = table.repeated_features()
    if twice:  # the model finds its columns by name
        raise ValueError(f"{table.name}: more than one feature is named {twice[0]!r} ({table.description}), and a "
                         "model finds its columns by name: rename one, or leave them out (--ignore-columns)")
    used, caught = subset_rows(table, options["max_rows"], options["seed"]), []
    with _recorded(caught):  # what the rows' classes warn of is kept with the fit's own warnings
        y = used.y if task == REGRESSION else checked_classes(used, drawn_from=table)
    estimator = ESTIMATORS[task](**{"random_state": options["seed"], **params, "verbose": int(progress)})
    check_before_fit(estimator, len(y), used.X.shape[1])
    X = _named(used.X, used.feature_names)
    replaces = _tensor_files(out) if overwrite else []
    with torch_threads(check_threads("threads", threads)), claimed(out, [RECORD, f"{MODEL}.json"], overwrite,
                                                                    FIT_KIND, replaces=replaces) as stage:
        start = time.perf_counter()
        with _recorded(caught):
            estimator.fit(X, y)
        seconds = time.perf_counter() - start
        first = {}
        for warning in caught:
            first.setdefault(str(warning.message), warning)
        for warning in first.values():  # passed on once each (the command line says them as its lines), and kept
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        estimator.set_params(verbose=0).save(stage / MODEL)  # the command's progress is no setting of the model
        record = {"dataset": table.name, "task": task, "estimator": type(estimator).__name__, "n": len(y),
                  "d": int(used.X.shape[1]), "features": used.feature_names, "model": f"{MODEL}.json",
                  "training": _training(estimator, seconds), "warnings": list(first),
                  **({"classes": estimator.classes_.tolist()} if task == CLASSIFICATION else {}),
                  "config": run_config(table, used, {**options, "threads": torch.get_num_threads()}, params, {})}
        write_json(stage / RECORD, record)
    return record


@contextmanager
def _recorded(caught: list):
    """Every warning raised inside, appended to ``caught`` rather than shown."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        yield
    caught.extend(seen)


def _named(X: np.ndarray, names) -> np.ndarray:
    """Rows with their columns' ``names`` where there are any: a fit's, which the estimator keeps
    (``feature_names_in_``) so that ``predict`` finds its columns in another file by name, and the rows it then
    predicts (scikit-learn warns of an array where it kept names); without names (a registered table), the array."""
    if names is None:
        return X
    import pandas as pd

    return pd.DataFrame(X, columns=names)


def _tensor_files(out) -> list[str]:
    """The tensor files of an earlier fit's model in ``out``, which the new one's replace: none where no record
    shows a fit (a file of that name is someone else's)."""
    folder = Path(out)
    if not (folder / RECORD).is_file():
        return []
    return sorted(path.name for path in folder.glob(f"{MODEL}.*.safetensors") if checkpoint.owns(MODEL, path.name))


def _training(estimator, seconds: float) -> dict:
    """What the fit did: the kept network's epochs and best loss (validation, or training where too few rows left
    any for validation: ``loss``; what it measures: ``measure``), which network it kept and each network's best
    validation loss, which it chose by (``validation_losses_``), its time."""
    validated = estimator.validation_loss_curve_ is not None
    measure = "cross-entropy" if hasattr(estimator, "classes_") else "mean squared error on the standardised target"
    return {"epochs": int(estimator.n_iter_), "best_epoch": int(estimator.best_epoch_),
            "loss": "validation" if validated else "training", "best_loss": float(estimator.best_loss_),
            "measure": measure,  # of the losses: a regressor's is not in the target's units, as predict's MSE is
            "kept": estimator.selected_, "validation_losses": {name: float(loss) for name, loss in
                                                                estimator.validation_losses_.items()},
            "seconds": round(seconds, 3)}


TABLE_RUN_RECORDS = {RESULTS_JSON: "{path}", SUMMARY_JSON: f"{{folder}}/TABLE/{RESULTS_JSON}"}  # what fit --config
# takes of a regress run's record, or of a folder holding it; an ablation.json gives no model


def means_model(path) -> bool:
    """Whether ``path`` names a saved estimator, or what ``load_model`` explains holds none: a fit's record, a table
    run's record or folder (so that ``export`` does not take it for a classify run)."""
    path = Path(path)
    try:
        return path.name == RECORD or _table_run_record(path) is not None or checkpoint.exists(saved_stem(path))
    except (FileNotFoundError, checkpoint.CheckpointError):  # a folder without one; a tensor file
        return False


def _table_run_record(path: Path) -> Path | None:
    """The record of the regress or ablate run that ``path`` is, or whose folder it is; else None."""
    names = (*TABLE_RUN_RECORDS, ABLATION_JSON)
    if path.is_file() and path.name in names:
        return path
    return next((path / name for name in names if path.is_dir() and (path / name).is_file()), None)


def _no_model(record: Path) -> str:
    """Why a table run's ``record`` gives no model to load, and what fits one."""
    form = TABLE_RUN_RECORDS.get(record.name)
    fits = (f"meta-neighborhoods fit --config {form.format(path=record, folder=record.parent)} fits one" if form else
            "fit --config takes a regress run's results.json")
    return f"{record} is the record of {'a regress' if form else 'an ablate'} run, which keeps no model: {fits}"


def load_model(path):
    """The estimator saved at ``path``: a fit folder, or a checkpoint as ``save`` was given it (``model`` or
    ``model.json``), of either class, every field checked (``persistence.load``). A folder that a fit still writes
    is named as such, not as one without a model."""
    with reading(path) if Path(path).is_dir() else nullcontext():
        return _load_model(path)


def _load_model(path):
    if Path(path).name == RECORD:
        raise FileNotFoundError(f"{path} is the record of a fit: give its folder, {Path(path).parent}")
    record = _table_run_record(Path(path))
    if record is not None and not (Path(path).is_dir() and checkpoint.exists(Path(path) / MODEL)):
        raise FileNotFoundError(_no_model(record))
    stem = saved_stem(path)
    if not checkpoint.exists(stem):
        raise FileNotFoundError(f"{path} is neither a fit's folder nor a saved model (no {stem}.json)")
    meta = checkpoint.read_meta(stem)
    name = meta.get("estimator")
    if name is None and "model_args" in meta:  # checkpoint best of a classify run
        raise FileNotFoundError(f"{stem}.json is a checkpoint of a classify run, not a saved estimator (a fit's "
                                f"folder): export takes the run's folder, {stem.parent}")
    classes = {cls.__name__: cls for cls in ESTIMATORS.values()}
    if not isinstance(name, str) or name not in classes:
        raise checkpoint.CheckpointError(f"{stem}.json holds no estimator of this package ({str(name)[:40]!r}); "
                                         f"expected one of {', '.join(classes)}")
    return classes[name].load(stem)


def predict_file(model, data_file, out, encoding: str = "utf-8", separator: str = "comma", target: str | None = None,
                 probabilities: bool = False, keep: tuple[str, ...] = (), device: str = "cpu",
                 overwrite: bool = False, decimal: str = "point") -> dict:
    """Write the predictions of the estimator saved at ``model`` (see ``load_model``) for the rows of CSV file
    ``data_file`` into CSV file ``out``, one line per row in the file's order, with the file's separator and
    ``decimal`` mark: a column
    ``prediction`` (``prediction_0``, ... for several targets) and, for a classifier with ``probabilities``, one
    ``probability_<class>`` per class, after the columns ``keep`` names, copied as written (an identifier). The
    model's columns are found by name; others are left out. With ``target``,
    that column is scored on the rows that hold a value: the mean squared error in its own units, or the accuracy
    (``scored``: how many rows). A file that exists is refused
    unless ``overwrite``, the data file and the model's own files always."""
    estimator = load_model(model)
    classifier = hasattr(estimator, "classes_")
    if probabilities and not classifier:
        raise ConfigError(f"{model} holds a regressor: it has no class probabilities", "probabilities")
    _check_out(out, overwrite, model, [data_file], "the data file or the model's files")
    taken = [name for name in keep if re.fullmatch(r"prediction(_\d+)?", name)
             or probabilities and name.startswith("probability_")]
    if taken:
        raise ConfigError(f"--keep-columns {taken[0]!r} is the name of a column of predictions", "keep_columns")
    named = hasattr(estimator, "feature_names_in_")
    if not named:  # as scikit-learn warns of named columns given to an estimator fitted without names
        LOGGER.warning("%s was fitted without column names (on a registered table, or on an array): it takes the "
                       "%d columns of %s in the file's order, whatever its header names them", model,
                       estimator.n_features_in_, data_file)
    X, y = load_csv_rows(data_file, estimator.feature_names_in_.tolist() if named else estimator.n_features_in_,
                         target, encoding, separator, keep, labels=classifier, unlabelled=True, decimal=decimal)
    kept = load_csv_text(data_file, keep, len(X), encoding, separator) if keep else {}
    X = _named(X, getattr(estimator, "feature_names_in_", None))
    estimator.model_.to(resolve_device(device))  # predict runs where the network is
    predicted = estimator.predict(X)
    if y is not None and predicted.ndim != 1:
        raise ConfigError(f"--target scores one column, and {model} predicts {predicted.shape[1]} targets", "target")
    columns = {"prediction": predicted} if predicted.ndim == 1 else \
        {f"prediction_{j}": predicted[:, j] for j in range(predicted.shape[1])}
    if probabilities:
        columns.update({f"probability_{label}": p
                        for label, p in zip(estimator.classes_, estimator.predict_proba(X).T)})
    columns = {**kept, **columns}
    scored = None if y is None else _labelled(y, target)
    score = None if not scored else _score(estimator, predicted[scored], y[scored], target)
    _write_csv(out, columns, SEPARATORS[separator], DECIMALS[decimal], overwrite)
    return {"rows": len(predicted), "estimator": type(estimator).__name__, "score": score,
            "scored": 0 if scored is None else len(scored), "metric": None if y is None else
            "accuracy" if classifier else "mse"}


def _labelled(y: np.ndarray, target: str) -> list[int]:
    """The rows whose column ``target`` holds a value (missing: NaN, or None among labels), warning of the others:
    a file may hold new rows beside labelled ones, and every row is predicted."""
    rows = [i for i, value in enumerate(y) if value is not None and value == value]  # NaN != NaN
    if len(rows) < len(y):
        LOGGER.warning("--target %s has no value on %d of %d rows: %s", target, len(y) - len(rows), len(y),
                       "the others are scored" if rows else "nothing is scored")
    return rows


def _score(estimator, predicted: np.ndarray, y: np.ndarray, target: str) -> float | None:
    """The mean squared error of ``predicted`` against the values ``y`` of column ``target``, or a classifier's
    accuracy against its labels ``y`` (text, read as numbers where its classes are numbers, as fit read them),
    warning of labels it never saw (None, and a warning, where it knows none of them)."""
    if not hasattr(estimator, "classes_"):
        return float(np.mean((predicted - y) ** 2))
    labels = text_numbers(y) if estimator.classes_.dtype.kind in "iufb" else y  # as fit read them: True is 1
    unseen = ~np.isin(labels, estimator.classes_)
    if unseen.all():  # another column, or classes written otherwise (true for True): no accuracy of 0 to give
        shown = ", ".join(map(str, estimator.classes_[:5])) + ", ..." * (len(estimator.classes_) > 5)
        LOGGER.warning("--target %s holds no class of the model (%r, ...; its classes: %s), so nothing is scored: is "
                       "it the column of the labels, written as the table the model was fit on wrote them?", target,
                       y[0], shown)
        return None
    if unseen.any():
        LOGGER.warning("--target %s holds labels the model never saw (%s, ...), which it cannot predict", target,
                       y[unseen][0])
    return float(np.mean(predicted == labels))


def export_fit(model, out, overwrite: bool = False, seed: int = 0) -> dict:
    """The estimator saved at ``model`` (see ``load_model``) as one ONNX graph at ``out`` (its ``export_onnx``: raw
    float32 rows in, its predictions, or a classifier's class probabilities, out), written only once it agrees with
    the estimator on random rows around its training columns' means; never over the model's own files, nor over a
    file without ``overwrite``. Returns the ``path``, whether the model is a ``classifier``, the largest
    ``difference`` from the estimator's answers and the ``largest`` of those (float32 rounds in proportion)."""
    estimator = load_model(model)
    _check_out(out, overwrite, model, [], "the model's files")
    rows = np.random.default_rng(seed).normal(size=(export.CHECK_BATCH, estimator.n_features_in_))
    rows = (rows * estimator.x_scale_ + estimator.x_mean_).astype(np.float32)
    named = _named(rows, getattr(estimator, "feature_names_in_", None))
    expected = estimator.predict_proba(named) if hasattr(estimator, "classes_") else estimator.predict(named)
    difference = export.write_checked(Path(out), estimator.export_onnx, lambda candidate: float(np.abs(
        export.onnx_output(candidate, rows).reshape(expected.shape) - expected).max()), overwrite)
    return {"path": Path(out), "classifier": hasattr(estimator, "classes_"), "difference": difference,
            "largest": float(np.abs(expected).max())}


def _model_files(model) -> list[Path]:
    """The files of the saved model at ``model``, which predictions never replace."""
    stem = saved_stem(model)
    return [path for path in stem.parent.glob(f"{stem.name}*") if checkpoint.owns(stem, path.name)] + \
        [stem.parent / RECORD, stem.parent / LOCK]  # a fit folder's, whichever way --model names it


def _check_out(out, overwrite: bool, model, inputs: list, named: str) -> None:
    """Refuse ``out`` where it is one of the ``inputs`` or ``model``'s files (what ``named`` says), or named as one
    of them (a later fit into the model's folder would remove it), a folder, or a file that exists without
    ``overwrite``: before any work."""
    if str(out).endswith(("/", os.sep)):
        raise IsADirectoryError(f"{out} names a folder: --out is the file to write, such as predictions.csv")
    out, stem = Path(out), saved_stem(model)
    if any(Path(path).exists() and out.exists() and out.samefile(path) or out.absolute() == Path(path).absolute()
           for path in [*inputs, *_model_files(model)]):
        raise FileExistsError(f"{out} is one of the files read ({named}); choose another --out")
    if out.parent.resolve() == stem.parent.resolve() and checkpoint.owns(stem, out.name):
        raise FileExistsError(f"{out} is named as the saved model's own files, which a fit into its folder removes; "
                              "choose another --out")
    replaceable(out)
    if (out.exists() or out.is_symlink()) and not overwrite:  # a dangling link too: it is not replaced unasked
        raise FileExistsError(f"{out} already exists: replace it with --overwrite, or choose another --out")


def _write_csv(out, columns: dict[str, np.ndarray], separator: str, decimal: str, overwrite: bool) -> None:
    """``columns`` as a CSV file with a header, written whole or not at all; each number as it reads back (with its
    ``decimal`` mark); a file at ``out`` replaced only with ``overwrite``, even one written while this ran."""
    import pandas as pd

    atomic_write(out, lambda path: pd.DataFrame(columns).to_csv(path, sep=separator, index=False, decimal=decimal),
                 overwrite)
