"""A table's target as class labels, for the classifiers of a table run or a final fit: read from the table, checked
before any work (a regression's target, classes too small for the folds), and split by class where the classes
allow it."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold

from ..datasets.tables import Table
from ..validation import ConfigError


def class_labels(table: Table) -> np.ndarray:
    """The class labels a classifier fits, as the table names them: text, or integers (a numeric CSV holds them as
    floats), where a column of fractions is refused, being most likely a regression's target."""
    if table.classes is not None:
        return np.asarray(table.classes, dtype=object)[table.y.astype(np.int64)]
    fractional = table.y != np.round(table.y)
    if fractional.any():
        raise ValueError(f"{table.name}: classification needs class labels, but the target holds fractions such as "
                         f"{float(table.y[np.argmax(fractional)])!r} ({table.description}); is it a regression's "
                         "target?")
    if np.abs(table.y).max() >= 2**53:  # from it on, a float64 holds no longer every integer: labels would merge
        raise ValueError(f"{table.name}: the class labels reach {np.abs(table.y).max():g} ({table.description}), "
                         "from 2**53 on, where the file's numbers no longer tell every integer apart; renumber them")
    return table.y.astype(np.int64)


def checked_classes(table: Table, folds: int | None = None, drawn_from: Table | None = None) -> np.ndarray:
    """``class_labels``, checked before any work: with ``folds``, a class of a single row is refused (the training
    rows of the fold that tests it would lack it, and a binary table's would hold one class), and one of fewer rows
    than folds is warned of; classes of a row or two each, a class of a single row (a mistyped label?), and classes
    that the rows drawn from the table ``drawn_from`` (``max_rows``) lack, are warned of."""
    labels = class_labels(table)
    classes, counts = np.unique(labels, return_counts=True)
    if np.median(counts) < 3:
        warnings.warn(f"{table.name}: {len(counts)} classes among {len(labels)} rows, most of a row or two, too few "
                      f"to learn them from ({table.description}); is it a regression's target?", UserWarning,
                      stacklevel=2)
    elif counts.min() == 1 and folds is None:
        warnings.warn(f"{table.name}: {int(np.sum(counts == 1))} class(es) of a single row, such as "
                      f"{str(classes[np.argmin(counts)])!r}, which the model learns little of: a mistyped label?",
                      UserWarning, stacklevel=2)
    if drawn_from is not None and len(drawn_from.y) > len(table.y):
        lost = np.setdiff1d(np.unique(class_labels(drawn_from)), classes)
        if len(lost):
            warnings.warn(f"{table.name}: the {len(labels)} rows drawn (max_rows) hold {len(classes)} of the table's "
                          f"{len(lost) + len(classes)} classes: the model never predicts {str(lost[0])!r}"
                          f"{' and the others' * (len(lost) > 1)}", UserWarning, stacklevel=2)
    if folds is not None and 1 < counts.min() < folds:  # said here, with the table's name, not by scikit-learn
        warnings.warn(f"{table.name}: class {str(classes[np.argmin(counts)])!r} has {counts.min()} rows, fewer than "
                      f"the {folds} folds: {folds - counts.min()} test fold(s) lack it", UserWarning, stacklevel=2)
    if folds is not None and counts.min() == 1:
        raise ConfigError(f"{table.name}: class {str(classes[np.argmin(counts)])!r} has a single row, which the "
                          "training rows of the fold that tests it would lack: drop that row, or give more rows "
                          "(--max-rows)", "folds")
    return labels


def stratifiable(labels: np.ndarray, parts: int) -> bool:
    """Whether every class of ``labels`` has a row for each of ``parts`` parts (and each part a row of every
    class): where not, a split by class fails, and an inner split is drawn without regard to class instead."""
    counts = np.unique(labels, return_counts=True)[1]
    return counts.min() >= parts and len(labels) // parts >= len(counts)


class ByClassWherePossible:
    """``n_splits`` shuffled folds, stratified by class where the classes allow it (``stratifiable``), else drawn
    without regard to class: the inner split of a training fold, whose classes may be small (scikit-learn's
    ``cv`` protocol)."""

    def __init__(self, n_splits: int, random_state: int):
        self.n_splits, self.random_state = n_splits, random_state

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        return self.n_splits

    def split(self, X, y, groups=None):
        folds = StratifiedKFold if stratifiable(np.asarray(y), self.n_splits) else KFold
        return folds(self.n_splits, shuffle=True, random_state=self.random_state).split(X, y)
