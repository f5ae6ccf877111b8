"""A user's CSV files (a header row, then numbers): as a table to cross-validate or fit (``load_csv_table``), or as
the rows a fitted model predicts (``load_csv_rows``), each read and checked as a registered table is
(``tables.checked_table``), with errors that name the file, its line and its column."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..validation import check_encoding, check_option
from .files import require_file
from .tables import Table, check_features, check_target, checked_table
from .text_tables import MissingColumn, Source, read_numeric, read_text_columns

SEPARATORS = {"comma": ",", "semicolon": ";", "tab": "\t", "pipe": "|"}  # a CSV file's, by name (an option's value)


def load_csv_table(path: Path | str, target: str | int, encoding: str = "utf-8", separator: str = "comma",
                   ignore: tuple[str, ...] = (), labels: bool = False) -> Table:
    """Any numeric CSV with a header row; ``target`` is a column name or a (possibly negative) column index;
    ``encoding``, the file's text encoding (UTF-8's byte-order mark, if any, is dropped); ``separator``, the name of
    the character between its fields (``SEPARATORS``); ``ignore``, columns to leave out by name (every column of
    that name), which may hold text (an identifier). Numbers are written with a decimal point, whatever the
    separator (a decimal comma is refused, saying so). Where the target holds class ``labels``, they may be text
    (``read_labels``): the table then lists them as its ``classes``, and ``y`` holds each row's index into them.

    All other columns become features, so non-numeric columns must be encoded, dropped or ignored.
    """
    path = Path(path)
    ignore = tuple(dict.fromkeys((ignore,) if isinstance(ignore, str) else ignore))  # each name once

    def wanted(names: list[str]) -> list[int]:  # the features, then the target
        absent = [name for name in ignore if name not in names]
        if absent:
            raise MissingColumn(f"{path.stem}: {path} has no column named {absent[0]!r} to ignore; columns: {names}")
        left_out = [j for j, name in enumerate(names) if name in ignore]
        _refuse_unnamed(names, path, ignore)
        if isinstance(target, str):
            target_index = _column(names, target, path)
        elif -len(names) <= target < len(names):
            target_index = target % len(names)
        else:
            raise ValueError(f"{path.stem}: target index {target} is out of range for {path} ({len(names)} columns)")
        if target_index in left_out:
            raise ValueError(f"{path.stem}: the target column {names[target_index]!r} is one of the columns ignored")
        chosen[:] = [names[target_index], target_index]
        features = [j for j in range(len(names)) if j != target_index and j not in left_out]
        return features if labels else features + [target_index]  # labels are read as text, after the numbers

    chosen: list = []  # the target's name and index
    path, names, data, source = _read_csv(path, encoding, separator, wanted, text=bool(ignore) or labels)
    if labels:
        X, (y, classes) = data, _coded(read_labels(path, chosen[1], len(data), source, encoding, separator), path)
    else:
        X, y, classes = data[:, :-1], data[:, -1], None
    ignored = f", {len(ignore)} column(s) ignored" if ignore else ""
    named = f", {len(classes)} classes" if classes else ""
    description = f"CSV file {path}: {len(X)} x {X.shape[1]}, target = column {chosen[0]!r}{ignored}{named}"
    return checked_table(path.stem, X, y, names[:X.shape[1]], description, source, target=chosen[0],
                          encoding=encoding, separator=separator, ignored=ignore, classes=classes)


NOT_LABELS = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                        "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})  # pandas' missing values


def read_labels(path: Path, column: str | int, rows: int, source: Source, encoding: str,
                separator: str) -> np.ndarray:
    """The class labels in ``column`` (a name, or an index) of a CSV file whose ``rows`` rows ``read_numeric`` read
    (``source``), as text without the blanks around it; an empty or missing label (NA, ...) is refused, naming its
    line."""
    index = (lambda names: [column]) if isinstance(column, int) else (lambda names: [_column(names, column, path)])
    [text] = read_text_columns(path, index, dataset=path.stem, delimiter=SEPARATORS[separator], encoding=encoding,
                               rows=rows).values()
    text = np.array([label.strip() for label in text], dtype=object)
    missing = np.isin(text, list(NOT_LABELS))
    if missing.any():
        first = int(np.argmax(missing))
        raise ValueError(f"{path.stem}: the target has {int(missing.sum())} missing class label(s) (first "
                         f"{text[first]!r}, on file line {source.line(first)} of {path}); drop or fill those rows, "
                         "or rename the class")
    return text


def label_numbers(labels: np.ndarray) -> np.ndarray:
    """Class labels of text as the numbers they write (NaN for one that writes none), as a numeric column reads."""
    import pandas as pd

    return pd.to_numeric(pd.Series(labels, dtype=object), errors="coerce").to_numpy(dtype=np.float64)


def _coded(labels: np.ndarray, path: Path) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """(y, classes) of a table's class labels: their numbers, and None, where every label is a number; else each
    row's index into the sorted labels, which are the ``classes``."""
    numbers = label_numbers(labels)
    if not np.isnan(numbers).any():
        return numbers, None
    classes, y = np.unique(labels.astype(str), return_inverse=True)
    if len(classes) == 1:
        raise ValueError(f"{path.stem}: the target of {path} holds one class ({str(classes[0])!r}): there is "
                         "nothing to predict")
    return y.astype(np.float64), tuple(classes.tolist())


def load_csv_rows(path: Path | str, features: list[str] | int, target: str | None = None, encoding: str = "utf-8",
                  separator: str = "comma", kept: tuple[str, ...] = (),
                  labels: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows of a CSV file with a header row that a fitted model predicts: the columns it was fitted on by name,
    in its order (``features``; an int: a model fitted without names takes that many, every column but ``target``
    and the ``kept`` ones, which predictions carry, in the file's order), and the ``target`` column where one is
    named, to score against (else None; class ``labels`` as text, as ``read_labels`` reads them). Other
    columns are left out, and may hold text (an identifier). Read and checked as ``load_csv_table`` reads a table."""
    path = Path(path)

    def wanted(names: list[str]) -> list[int]:
        target_index = [] if target is None else [_column(names, target, path)]
        read = [] if labels else target_index  # labels are read as text, after the numbers
        if isinstance(features, int):
            _refuse_unnamed(names, path, tuple(kept))
            columns = [j for j in range(len(names)) if j not in target_index and names[j] not in kept]
            if len(columns) != features:
                besides = " besides the target and the columns kept" if target_index or kept else ""
                raise ValueError(f"{path.stem}: {path} has {len(columns)} columns{besides}, the model takes "
                                 f"{features} features (in order; it was fitted without their names)")
            return columns + read
        missing = [feature for feature in features if feature not in names]
        if missing:
            raise MissingColumn(f"{path.stem}: {path} has no column named {missing[0]!r}, a feature of the model"
                                f"{f' ({len(missing)} missing)' * (len(missing) > 1)}; columns: {names}"[:400])
        return [_column(names, feature, path) for feature in features] + read

    path, names, data, source = _read_csv(path, encoding, separator, wanted, text=True)
    n_features = len(names) - (target is not None and not labels)
    X = np.ascontiguousarray(data[:, :n_features])
    check_features(path.stem, X, names[:n_features], source)
    if labels and target is not None:
        return X, read_labels(path, target, len(X), source, encoding, separator)
    y = None if target is None else data[:, n_features]
    if y is not None:
        check_target(path.stem, y, source)
    return X, y


def load_csv_text(path: Path | str, columns: list[str], rows: int, encoding: str = "utf-8",
                  separator: str = "comma") -> dict[str, np.ndarray]:
    """The ``columns`` of a CSV file that ``load_csv_rows`` read (its ``rows`` rows), by name, each field as written:
    an identifier to carry beside predictions."""
    path = Path(path)
    check_option("separator", separator, SEPARATORS)
    return read_text_columns(path, lambda names: [_column(names, name, path) for name in dict.fromkeys(columns)],
                             dataset=path.stem, delimiter=SEPARATORS[separator],
                             encoding=check_encoding("encoding", encoding), rows=rows)


def _read_csv(path: Path | str, encoding: str, separator: str, columns: Callable[[list[str]], list[int]],
              text: bool):
    """(path, names, float64 rows, source) of the ``columns`` of a user's CSV file (``read_numeric``'s). Where the
    others may hold ``text``, only those are read as numbers; else every column is, first, so that a file read with
    the wrong separator or header is told so by its fields."""
    path, encoding = Path(path), check_encoding("encoding", encoding)
    check_option("separator", separator, SEPARATORS)
    require_file(path, None, dataset=path.stem, hint="Give an existing CSV file with a header row.",
                 within=None)  # the file the user named
    names, data, source = read_numeric(path, dataset=path.stem, delimiter=SEPARATORS[separator], header=True,
                                       encoding=encoding, columns=columns if text else None)
    if not text:
        keep = columns(names)
        names, data = [names[j] for j in keep], data[:, keep]
    return path, names, data, source


def _refuse_unnamed(names: list[str], path: Path, ignore: tuple[str, ...] = ()) -> None:
    """Refuse a header with an empty name, unless ``ignore`` leaves it out: pandas' to_csv writes its index so, whose
    row numbers would be taken for a feature."""
    if "" in names and "" not in ignore:
        why = ("a separator at the end of every line? remove it" if names.index("") == len(names) - 1 else
               "a table's index written by pandas' to_csv? write it with index=False")
        raise ValueError(f"{path.stem}: column {names.index('') + 1} of {path} has no name in the header ({why}, or "
                         "name the column)")


def _column(names: list[str], column: str, path: Path) -> int:
    """The index of the one column of the header ``names`` called ``column``."""
    if column not in names:
        raise MissingColumn(f"{path.stem}: {path} has no column named {column!r}; columns: {names}"[:400])
    if names.count(column) > 1:
        raise ValueError(f"{path.stem}: {path} has more than one column named {column!r}; columns: {names}")
    return names.index(column)
