"""A user's CSV files (a header row, then numbers): as a table to cross-validate or fit (``load_csv_table``), or as
the rows a fitted model predicts (``load_csv_rows``), each read and checked as a registered table is
(``tables.checked_table``), with errors that name the file, its line and its column."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..validation import check_encoding, check_option
from .files import require_file
from .tables import Table, check_features, checked_table
from .text_tables import MissingColumn, read_numeric, read_text_columns

SEPARATORS = {"comma": ",", "semicolon": ";", "tab": "\t", "pipe": "|"}  # a CSV file's, by name (an option's value)


def load_csv_table(path: Path | str, target: str | int, encoding: str = "utf-8", separator: str = "comma",
                   ignore: tuple[str, ...] = ()) -> Table:
    """Any numeric CSV with a header row; ``target`` is a column name or a (possibly negative) column index;
    ``encoding``, the file's text encoding (UTF-8's byte-order mark, if any, is dropped); ``separator``, the name of
    the character between its fields (``SEPARATORS``); ``ignore``, columns to leave out by name (every column of
    that name), which may hold text (an identifier). Numbers are written with a decimal point, whatever the
    separator (a decimal comma is refused, saying so).

    All other columns become features, so non-numeric columns must be encoded, dropped or ignored.
    """
    encoding, path = check_encoding("encoding", encoding), Path(path)
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
        return [j for j in range(len(names)) if j != target_index and j not in left_out] + [target_index]

    path, names, data, source = _read_csv(path, encoding, separator, wanted, text=bool(ignore))
    ignored = f", {len(ignore)} column(s) ignored" if ignore else ""
    description = f"CSV file {path}: {len(data)} x {len(names) - 1}, target = column {names[-1]!r}{ignored}"
    return checked_table(path.stem, data[:, :-1], data[:, -1], names[:-1], description, source, target=names[-1],
                          encoding=encoding, separator=separator, ignored=ignore)


def load_csv_rows(path: Path | str, features: list[str] | int, target: str | None = None, encoding: str = "utf-8",
                  separator: str = "comma", kept: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows of a CSV file with a header row that a fitted model predicts: the columns it was fitted on by name,
    in its order (``features``; an int: a model fitted without names takes that many, every column but ``target``
    and the ``kept`` ones, which predictions carry, in the file's order), and the ``target`` column where one is
    named, to score against (else None). Other columns are left out, and may hold text (an identifier). Read and
    checked as ``load_csv_table`` reads a table."""
    path = Path(path)

    def wanted(names: list[str]) -> list[int]:
        target_index = [] if target is None else [_column(names, target, path)]
        if isinstance(features, int):
            _refuse_unnamed(names, path, tuple(kept))
            columns = [j for j in range(len(names)) if j not in target_index and names[j] not in kept]
            if len(columns) != features:
                besides = " besides the target and the columns kept" if target_index or kept else ""
                raise ValueError(f"{path.stem}: {path} has {len(columns)} columns{besides}, the model takes "
                                 f"{features} features (in order; it was fitted without their names)")
            return columns + target_index
        missing = [feature for feature in features if feature not in names]
        if missing:
            raise MissingColumn(f"{path.stem}: {path} has no column named {missing[0]!r}, a feature of the model"
                                f"{f' ({len(missing)} missing)' * (len(missing) > 1)}; columns: {names}"[:400])
        return [_column(names, feature, path) for feature in features] + target_index

    path, names, data, source = _read_csv(path, encoding, separator, wanted, text=True)
    n_features = len(names) - (target is not None)
    X = np.ascontiguousarray(data[:, :n_features])
    check_features(path.stem, X, names[:n_features], source)
    y = None if target is None else data[:, n_features]
    if y is not None and not np.isfinite(y).all():
        raise ValueError(f"{path.stem}: the target has NaN/inf values (first on file line "
                         f"{source.line(int(np.argmax(~np.isfinite(y))))} of {path}); drop or fill them to score")
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
