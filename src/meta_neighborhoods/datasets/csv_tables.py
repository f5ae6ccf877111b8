"""A user's CSV files (a header row, then numbers): as a table to cross-validate or fit (``load_csv_table``), or as
the rows a fitted model predicts (``load_csv_rows``), each read and checked as a registered table is
(``tables.checked_table``), with errors that name the file, its line and its column."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np

from ..validation import ConfigError, check_encoding, check_option
from .files import require_file
from .tables import Table, check_features, check_target, checked_table
from .text_tables import MISSING, MissingColumn, Source, read_numeric, read_text_columns, text_numbers

SEPARATORS = {"comma": ",", "semicolon": ";", "tab": "\t", "pipe": "|"}  # a CSV file's, by name (an option's value)
DECIMALS = {"point": ".", "comma": ","}  # what marks a number's fraction in a CSV file, by name


def load_csv_table(path: Path | str, target: str | int, encoding: str = "utf-8", separator: str = "comma",
                   ignore: tuple[str, ...] = (), labels: bool = False, decimal: str = "point") -> Table:
    """Any numeric CSV with a header row; ``target`` is a column name or a (possibly negative) column index;
    ``encoding``, the file's text encoding (UTF-8's byte-order mark, if any, is dropped); ``separator``, the name of
    the character between its fields (``SEPARATORS``); ``ignore``, columns to leave out by name (every column of
    that name), which may hold text (an identifier); ``decimal``, what marks a number's fraction (``DECIMALS``: a
    decimal comma goes with another separator than the comma). A target of class ``labels`` is read as text
    (``read_labels``): as numbers where every label is an integer written plainly, else as written (``_coded``),
    the table then listing them as its ``classes``, and ``y`` each row's index into them.

    All other columns become features, so non-numeric columns must be encoded, dropped or ignored.
    """
    path = Path(path)
    ignore = tuple(dict.fromkeys((ignore,) if isinstance(ignore, str) else ignore))  # each name once

    def target_index(names: list[str]) -> int:
        absent = [name for name in ignore if name not in names]
        if absent:
            raise MissingColumn(f"{path.stem}: {path} has no column named {absent[0]!r} to ignore; columns: {names}")
        _refuse_unnamed(names, path, ignore)
        if isinstance(target, str):
            index = _column(names, target, path)
        elif -len(names) <= target < len(names):
            index = target % len(names)
        else:
            raise ValueError(f"{path.stem}: target index {target} is out of range for {path} ({len(names)} columns)")
        if names[index] in ignore:
            raise ValueError(f"{path.stem}: the target column {names[index]!r} is one of the columns ignored")
        return index

    def features(names: list[str]) -> list[int]:
        index = target_index(names)
        return [j for j, name in enumerate(names) if j != index and name not in ignore]

    if labels:  # the features as numbers, then the target as text
        path, names, X, source = _read_csv(path, encoding, separator, features, text=True, decimal=decimal)
        name, text = read_labels(path, lambda names: [target_index(names)], len(X), source, encoding, separator)
        y, classes = _coded(text, path, DECIMALS[decimal])
    else:
        path, names, data, source = _read_csv(path, encoding, separator,
                                              lambda names: features(names) + [target_index(names)], text=bool(ignore),
                                              decimal=decimal)
        X, y, classes, name = data[:, :-1], data[:, -1], None, names[-1]
    ignored = f", {len(ignore)} column(s) ignored" if ignore else ""
    named = f", {len(classes)} classes" if classes else ""
    description = f"CSV file {path}: {len(X)} x {X.shape[1]}, target = column {name!r}{ignored}{named}"
    return checked_table(path.stem, X, y, names[:X.shape[1]], description, source, target=name,
                          encoding=encoding, separator=separator, ignored=ignore, classes=classes, decimal=decimal)


def read_labels(path: Path, columns: Callable[[list[str]], list[int]], rows: int, source: Source, encoding: str,
                separator: str, unlabelled: bool = False) -> tuple[str, np.ndarray]:
    """(name, class labels) of the one column ``columns`` picks of a CSV file whose ``rows`` rows ``read_numeric``
    read (``source``), each label as text without the blanks around it; a missing one (empty, NA, ?, ...: a field
    ``read_numeric`` reads as missing) is refused, naming its line, or, where rows may be ``unlabelled``, None."""
    [(name, text)] = read_text_columns(path, columns, dataset=path.stem, delimiter=SEPARATORS[separator],
                                       encoding=encoding, rows=rows).items()
    text = np.array([label.strip() for label in text], dtype=object)
    missing = np.isin(text, list(MISSING))
    if unlabelled:
        text[missing] = None
    elif missing.any():
        first = int(np.argmax(missing))
        raise ValueError(f"{path.stem}: the target has {int(missing.sum())} missing class label(s) (first "
                         f"{text[first]!r}, on file line {source.line(first)} of {path}); drop or fill those rows, "
                         "or rename the class")
    return name, text


PLAIN_INTEGER = re.compile(r"0|-?[1-9][0-9]*")  # a label read as a number: no other text writes that number


def _coded(labels: np.ndarray, path: Path, decimal: str = ".") -> tuple[np.ndarray, tuple[str, ...] | None]:
    """(y, classes) of a table's class ``labels`` (text): the numbers, and None, where every label is an integer
    written plainly (0, 7, -2), or where they are numbers with fractions (with the file's ``decimal`` mark: a
    regression's target, which classification refuses); else each row's index into the sorted labels, which are the
    classes, as written (007, 1.0, True): two labels are one class only where they are written alike."""
    numbers = text_numbers(np.array([label.replace(decimal, ".") for label in labels], dtype=object))
    if all(PLAIN_INTEGER.fullmatch(label) for label in labels) or np.isfinite(numbers).all() and (
            numbers != np.round(numbers)).any():
        return numbers, None
    classes, y = np.unique(labels.astype(str), return_inverse=True)
    if len(classes) == 1:
        raise ValueError(f"{path.stem}: the target of {path} holds one class ({str(classes[0])!r}): there is "
                         "nothing to predict")
    return y.astype(np.float64), tuple(classes.tolist())


def load_csv_rows(path: Path | str, features: list[str] | int, target: str | None = None, encoding: str = "utf-8",
                  separator: str = "comma", kept: tuple[str, ...] = (), labels: bool = False,
                  unlabelled: bool = False, decimal: str = "point") -> tuple[np.ndarray, np.ndarray | None]:
    """The rows of a CSV file with a header row that a fitted model predicts: the columns it was fitted on by name,
    in its order (``features``; an int: a model fitted without names takes that many, every column but ``target``
    and the ``kept`` ones, which predictions carry, in the file's order), and the ``target`` column where one is
    named, to score against (else None; class ``labels`` as text, as ``read_labels`` reads them; where rows may be
    ``unlabelled``, a missing value is NaN, or None among labels, and only inf is refused). Other columns are left
    out, and may hold text (an identifier). Read and checked as ``load_csv_table`` reads a table."""
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

    path, names, data, source = _read_csv(path, encoding, separator, wanted, text=True, decimal=decimal)
    n_features = len(names) - (target is not None and not labels)
    X = np.ascontiguousarray(data[:, :n_features])
    check_features(path.stem, X, names[:n_features], source)
    if labels and target is not None:
        return X, read_labels(path, lambda names: [_column(names, target, path)], len(X), source, encoding,
                              separator, unlabelled)[1]
    y = None if target is None else data[:, n_features]
    if y is not None:
        check_target(path.stem, np.where(np.isnan(y), 0.0, y) if unlabelled else y, source)
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
              text: bool, decimal: str = "point"):
    """(path, names, float64 rows, source) of the ``columns`` of a user's CSV file (``read_numeric``'s). Where the
    others may hold ``text``, only those are read as numbers; else every column is, first, so that a file read with
    the wrong separator or header is told so by its fields. A column the header lacks is refused before any data
    row is read."""
    path, encoding = Path(path), check_encoding("encoding", encoding)
    check_option("separator", separator, SEPARATORS)
    check_option("decimal", decimal, DECIMALS)
    if DECIMALS[decimal] == SEPARATORS[separator]:
        raise ConfigError("a decimal comma needs another separator than the comma (--separator semicolon, say)",
                          "decimal")
    require_file(path, None, dataset=path.stem, hint="Give an existing CSV file with a header row.",
                 within=None)  # the file the user named
    names, data, source = read_numeric(path, dataset=path.stem, delimiter=SEPARATORS[separator], header=True,
                                       encoding=encoding, columns=columns, decimal=DECIMALS[decimal], select=text)
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
