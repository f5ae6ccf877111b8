"""Reading numeric text tables (CSV, whitespace-separated) into float64 with pandas' C parser, and errors that
name the file, the column and the row, each row by the one numbering a user can look up in an editor: its line in
the file (1-based, the header and blank lines counted). Which files make which table is ``tables.py``'s business.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import numpy as np

__all__ = ["Source", "TextTable", "read_numeric", "read_indices", "read_text_columns", "text_numbers", "MISSING",
           "MissingColumn", "NotNumeric", "NotInEncoding"]

# Read as missing (NaN, then reported as such) besides pandas' own markers (empty, NA, NaN, null, N/A, ...).
_NA_MARKERS = ["?", "na", "Na", "none", "None", "NONE", "Null", "NAN", "Nan"]
_PANDAS_NA = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
              "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]  # read_csv's defaults (its documentation lists them)
MISSING = frozenset(_NA_MARKERS + _PANDAS_NA)  # every field read_numeric reads as a missing value
_BOOLEANS = {"True": "1", "TRUE": "1", "true": "1", "False": "0", "FALSE": "0", "false": "0"}  # as pandas reads them
_RAGGED = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_COMMA_NUMBER = re.compile(r"[+-]?\d[\d,]*,\d*(\.\d*)?")  # 3,142 or 17,640.52: a decimal comma, or thousands
_POINT_THOUSANDS = re.compile(r"[+-]?\d{1,3}(\.\d{3})+(,\d*)?")  # 1.200,50 in a file of decimal commas
_DELIMITERS = ",;\t|"  # a CSV file's separators, one of which may be another than the one it is read with


class MissingColumn(ValueError):
    """A column asked for by name that the header lacks: perhaps a header read with another separator."""


class NotNumeric(ValueError):
    """A column read as numbers that holds text (its name, or None in a file without a header: ``column``)."""

    def __init__(self, message: str, column: str | None):
        super().__init__(message)
        self.column = column


class NotInEncoding(ValueError):
    """A text table that cannot be read in the encoding it is read in (the caller may say where that came from)."""


@dataclass(frozen=True)
class Source:
    """The file a table's rows come from, to name a row in errors by the one numbering a user can look up: the
    line of the file (1-based, header and blank lines counted), whatever the message."""

    path: Path
    header_end: int  # the file line the header ends on (0: no header)
    delimiter: str | None
    encoding: str  # as Python's open() takes it (_codec)

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """(file line, fields) of each data row, a row spanning lines (a quoted field's line breaks) named by its
        first: the header and blank lines hold none, as pandas reads them. Scans the file, so only errors ask."""
        with open(self.path, encoding=self.encoding, newline="") as handle:
            first = 1
            for fields, last in _records(handle, self.delimiter):
                if first > self.header_end and (len(fields) > 1 or "".join(fields).strip()):
                    yield first, fields
                first = last + 1

    def line(self, row: int) -> int:
        """File line of data row ``row`` (0-based)."""
        return next(itertools.islice(self.rows(), row, None), (row + 1 + self.header_end, []))[0]


class TextTable(NamedTuple):
    names: list[str] | None  # the header's, when the file has one
    data: np.ndarray  # (rows, columns) float64, NaN where a value is missing
    source: Source


def read_numeric(path: Path, *, dataset: str, delimiter: str | None, header: bool,
                 encoding: str | None = None, columns: Callable[[list[str]], list[int]] | None = None,
                 decimal: str = ".", select: bool = True) -> TextTable:
    """Read a numeric text table (optionally with a header row) into float64, with pandas' C parser: quoted
    fields, a byte-order mark and NA markers are understood, blank lines skipped; NA markers (and the missing
    fields of a short row) become NaN, which the caller reports as missing values. ``delimiter=None``: whitespace.
    ``encoding``: the one the user gave for the file (``--encoding``, which a refusal then names); None: UTF-8, as
    a registered table's file is. ``columns``: which columns of the header's names to read, and in what order (it
    raises for a column it misses, from the header alone); the others are left out, and may hold text, unless not
    ``select``: then every column is read as numbers. ``decimal``: what marks a number's fraction, a point or (a CSV
    file of another separator) a comma.

    The header is read apart (csv module), so that two columns of one name stay visibly two.
    """
    import pandas as pd  # here: the command line lists the tables, and starts, without it

    names, codec = None, _codec(encoding or "utf-8")
    try:
        names, skip, header_end = _header(path, delimiter, codec) if header else (None, 0, 0)
        keep = None if columns is None else _wanted(columns, names, delimiter, select)  # before the data
        frame = pd.read_csv(path, sep=delimiter or r"\s+", header=None, skiprows=skip, encoding=codec,
                            na_values=_NA_MARKERS, low_memory=False, engine="c", decimal=decimal)
    except UnicodeError as error:  # a binary or differently encoded file, a UTF-16 one without its byte-order mark
        shown = "UTF-8" if codec == "utf-8-sig" else f"the encoding {encoding!r}"
        where = f"byte {error.start}" if isinstance(error, UnicodeDecodeError) else str(error)
        other = "" if encoding is None else " or in another encoding (give it with --encoding: utf-16, latin-1, ...)"
        raise NotInEncoding(f"{dataset}: {path} is not a text table in {shown} ({where}); is it the right file{other}?"
                            ) from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{dataset}: {path} has no data rows") from None
    except (pd.errors.ParserError, csv.Error) as error:  # ragged rows, or a broken quote / header
        hint = _header_hint(names, delimiter, trailing=False) if names else ""
        raise ValueError(f"{dataset}: {_parser_problem(error, path)}{hint}") from None
    source = Source(path, header_end, delimiter, codec)
    if names is not None and frame.shape[1] != len(names):
        trailing = frame.shape[1] == len(names) + 1 and frame.iloc[:, -1].isna().all()
        raise ValueError(f"{dataset}: {path} has {len(names)} header names but {frame.shape[1]} columns of data"
                         f"{_header_hint(names, delimiter, trailing)}")
    width, missing = frame.shape[1], frame.isna().to_numpy().any(axis=1)  # of every column, those left out too
    if keep is not None and select:
        frame, names = frame.iloc[:, keep].copy(), [names[j] for j in keep]
    data = _as_float(frame, names, source, dataset=dataset, decimal=decimal)
    _refuse_short_rows(missing, source, width, dataset=dataset)
    return TextTable(names, data, source)


def _wanted(columns: Callable[[list[str]], list[int]], names: list[str] | None, delimiter: str | None,
            select: bool) -> list[int] | None:
    """``columns(names)`` from the header alone, so that a file of a million columns is not read to say that the
    target is not among them; a column it misses said with the hint of a header of another layout. Where every
    column is read (not ``select``), the data rows name such a layout better, and the caller's own check follows
    them: then only a missing column in a header with no such hint is refused here (None: not decided)."""
    try:
        return columns(names)
    except MissingColumn as error:
        hint = _header_hint(names, delimiter, trailing=False)
        if select or not hint:
            raise MissingColumn(f"{error}{hint}") from None
    except ValueError:
        if select:
            raise
    return None


def read_text_columns(path: Path, columns: Callable[[list[str]], list[int]], *, dataset: str, delimiter: str,
                      encoding: str, rows: int) -> dict[str, np.ndarray]:
    """Columns of a text table with a header (``columns``, as ``read_numeric`` takes them), by name, each field as
    written (no number or missing value read into it: an identifier such as 007 or NA stays so), for the ``rows``
    data rows ``read_numeric`` read of the same file: the same header and records, which the count checks."""
    import pandas as pd

    codec = _codec(encoding)
    names, skip, _ = _header(path, delimiter, codec)
    indices = columns(names)
    frame = pd.read_csv(path, sep=delimiter, header=None, skiprows=skip, encoding=codec, usecols=indices, dtype=str,
                        keep_default_na=False, engine="c")
    if len(frame) != rows:  # the same records as the numbers': never a column shifted against them
        raise ValueError(f"{dataset}: {path} reads as {len(frame)} rows of text but {rows} of numbers")
    return {names[index]: frame[index].to_numpy(dtype=object) for index in indices}


def _codec(encoding: str) -> str:
    """``encoding`` as the file is opened: UTF-8 drops a byte-order mark (editors on Windows write one), which would
    otherwise be read as part of the first name."""
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


def _header(path: Path, delimiter: str | None, codec: str) -> tuple[list[str], int, int]:
    """(the names of the header, the first record that is not blank; the records up to it, which the data skip
    (pandas counts a quoted line break inside a record as part of it, and blank lines as records); the file line
    it ends on)."""
    with open(path, newline="", encoding=codec) as handle:
        for count, (fields, line) in enumerate(_records(handle, delimiter), start=1):
            if len(fields) > 1 or "".join(fields).strip():
                fields[0] = fields[0].lstrip("\ufeff")  # a byte-order mark utf-16-le or -be keep, as utf-16 does not
                return [name.strip() for name in fields], count, line
    return [], 0, 0


def _header_hint(names: list[str], delimiter: str | None, trailing: bool) -> str:
    """Why a header and its data may disagree: a separator ending every data line (``trailing``: the data's one
    extra column is empty), a first line that is not the header, or another separator."""
    if trailing:
        return " (a separator at the end of every data line? remove it)"
    first = _first_line_hint(names, delimiter)
    if first:
        return f" ({first})"
    other = _other_delimiter(names, delimiter)
    return f" (the file seems separated by {other!r}, not {delimiter!r})" if other else ""


def _first_line_hint(names: list[str] | None, delimiter: str | None) -> str:
    """What the header's names say of a first line that is not the header: a comment, or a spreadsheet's 'sep='
    line (whose fields may number the data's columns, which then hold the real header as their first row), which
    may name another separator than the file's."""
    first = names[0] if names else ""
    if first.startswith("#"):
        return "is its first line a comment? delete it"
    if first.lower().startswith("sep="):
        other = first[4:5]
        if other in ("", delimiter):
            return "its first line is a spreadsheet's 'sep=' line: delete it"
        return (f"its first line is a spreadsheet's 'sep=' line: delete it, and the file seems separated by "
                f"{other!r}, not {delimiter!r}")
    return ""


def _other_delimiter(texts: list[str], delimiter: str | None, decimal: str = ".") -> str | None:
    """A separator other than the file's (and than its ``decimal`` mark) that ``texts`` hold (None for whitespace
    tables, which split on any)."""
    return next((d for d in _DELIMITERS if d not in (delimiter, decimal) and any(d in text for text in texts)),
                None) if delimiter else None


def _number_hint(text: str, delimiter: str | None, name: str | None = None, decimal: str = ".") -> str:
    """What to do about a field that is not a number (of column ``name``) in a file of that ``decimal`` mark:
    another separator where its name holds one (a comma file read as a semicolon one: '1,2,3' is then no decimal
    comma), else a comma in a number, else thousands separators, else another separator in the field."""
    other = _other_delimiter([name or ""], delimiter, decimal)
    comma = decimal == "." and _COMMA_NUMBER.fullmatch(text.strip())
    if not other and not comma:
        other = _other_delimiter([text], delimiter, decimal)
    if other:
        return f"the file seems separated by {other!r}, not {delimiter!r}"
    if comma:
        return ("a number written with a comma: a decimal comma (give --decimal comma, with a separator other than "
                "the comma), or thousands separators (write the number without them)")
    if decimal != "." and _POINT_THOUSANDS.fullmatch(text.strip()):
        return "a number written with thousands separators: write it without them"
    if text.strip().endswith("%"):
        return "a percentage: write the number without its % sign"
    return "only numeric columns can be read - encode or drop it first"


def _records(handle, delimiter: str | None) -> Iterator[tuple[list[str], int]]:
    """(fields, the file line it ends on) of each record: a CSV's quoted field may hold a line break. From a field
    beyond the csv module's size limit on, lines split plainly, only to count and locate rows."""
    lines = enumerate(handle, start=1)
    if delimiter is not None:
        reader, last = csv.reader((line for _, line in lines), delimiter=delimiter), 0
        try:
            for fields in reader:
                last = reader.line_num
                yield fields, last
            return
        except csv.Error:
            handle.seek(0)
            lines = itertools.islice(enumerate(handle, start=1), last, None)
    yield from ((line.split(delimiter), n) for n, line in lines)


def _refuse_short_rows(missing: np.ndarray, source: Source, width: int, *, dataset: str) -> None:
    """pandas fills the missing fields of a short row (a truncated file; ``width`` fields a row) with NaN: call it
    what it is, not a missing value. Only the rows ``missing`` marks (a field missing in any column, read or left
    out) are looked at, in one pass over the file."""
    suspects = set(np.flatnonzero(missing).tolist())
    for row, (line, fields) in enumerate(source.rows() if suspects else ()):
        if row in suspects and len(fields) < width:
            raise ValueError(f"{dataset}: file line {line} of {source.path} has {len(fields)} fields, expected "
                             f"{width}")


def _parser_problem(error: Exception, path: Path) -> str:
    """pandas' tokenizer error in this module's words (it counts file lines too, header included)."""
    ragged = _RAGGED.search(str(error))
    if ragged is None:
        return f"{path} is not a readable table ({str(error).strip()})"
    expected, line, saw = ragged.groups()
    return f"file line {line} of {path} has {saw} fields, expected {expected}"


def _numbers(values: pd.Series) -> pd.Series:
    """The numbers a column of text writes, True and False as 1 and 0 (a boolean column with missing values); NaN
    where one writes none, or is missing."""
    import pandas as pd

    return pd.to_numeric(values.astype(str).replace(_BOOLEANS).where(values.notna()), errors="coerce")


def _with_point(values: pd.Series, decimal: str, column: str, source: Source, dataset: str,
                name: str | None) -> pd.Series:
    """A column of text in a file of ``decimal`` commas (where pandas read no number, perhaps for one field), as
    written with a point. A field that reads as a number with a point is refused, naming its line: a thousands
    separator (1.166 for 1166) or a stray decimal point, which of the two nothing tells, and read either way it
    would pass for a number unnoticed. Other text (a date, 1.200,50) is left to be found no number."""
    import pandas as pd

    if decimal == ".":
        return values
    text = values.astype(str).str.strip()
    pointed = np.flatnonzero((text.str.contains(".", regex=False) & pd.to_numeric(text.where(values.notna()),
                                                                                 errors="coerce").notna()).to_numpy())
    if len(pointed):
        shown = str(values.iloc[pointed[0]])
        raise NotNumeric(f"{dataset}: column {column} of {source.path} holds a point in a file of decimal commas "
                         f"(file line {source.line(int(pointed[0]))}: {shown[:60]!r}): a thousands separator, or a "
                         "decimal point? write each number with its decimal comma alone", name)
    return values.where(values.isna(), text.str.replace(decimal, ".", regex=False))


def text_numbers(texts: np.ndarray) -> np.ndarray:
    """Fields of text as ``read_numeric`` reads them as numbers (float64; NaN for a missing one, or one that writes
    no number)."""
    import pandas as pd

    values = pd.Series(texts, dtype=object)
    return _numbers(values.where(~values.isin(list(MISSING)))).to_numpy(dtype=np.float64)


def _as_float(frame: pd.DataFrame, names: list[str] | None, source: Source, *, dataset: str,
              decimal: str = ".") -> np.ndarray:
    """The frame as float64 (its text of numbers written with ``decimal``); a column pandas could not read as
    numbers is named with its first non-number."""
    import pandas as pd
    for j in range(frame.shape[1]):
        values, name = frame.iloc[:, j], None if names is None else names[j]
        column = repr(name) if names is not None else f"{j} (0-based)"
        if pd.api.types.is_bool_dtype(values):  # True and False, as pandas writes them: 1 and 0, as X's booleans
            frame[frame.columns[j]] = values.astype(np.float64)
            continue
        if pd.api.types.is_numeric_dtype(values):
            continue
        numbers = _numbers(_with_point(values, decimal, column, source, dataset, name))
        bad = np.flatnonzero(numbers.isna().to_numpy() & values.notna().to_numpy())
        if len(bad):
            text = str(values.iloc[bad[0]])
            # a comment or 'sep=' line read as the header leaves the real header, no number in it, as the first row
            header = bad[0] == 0 and pd.to_numeric(frame.iloc[0].astype(str), errors="coerce").isna().all()
            hint = header and _first_line_hint(names, source.delimiter) or _number_hint(text, source.delimiter, name,
                                                                                         decimal)
            raise NotNumeric(f"{dataset}: column {column} of {source.path} is not numeric (file line "
                             f"{source.line(int(bad[0]))}: {text[:60]!r}{'...' * (len(text) > 60)}); {hint}", name)
        frame[frame.columns[j]] = numbers
    data = frame.to_numpy(dtype=np.float64)
    if data.size == 0:
        raise ValueError(f"{dataset}: {source.path} has no data rows")
    return data


def read_indices(path: Path, *, dataset: str) -> np.ndarray:
    """Column indices: whole numbers separated by whitespace (``index_features.txt``, ``index_target.txt``)."""
    values = read_numeric(path, dataset=dataset, delimiter=None, header=False).data.ravel()
    if not (np.isfinite(values).all() and (values == np.round(values)).all()):
        raise ValueError(f"{dataset}: {path} should hold column indices (whole numbers)")
    return values.astype(np.int64)
