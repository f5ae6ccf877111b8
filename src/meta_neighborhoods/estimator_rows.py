"""Rows going into the estimators: numeric columns, dense or sparse tables read a bounded block of rows at a time,
the rows a fit learns from (sample weights), and column scales that cannot overflow."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.model_selection import train_test_split
from sklearn.utils.sparsefuncs import mean_variance_axis, min_max_axis
from sklearn.utils.validation import _check_sample_weight

from .validation import outside_level

PREDICT_BATCH = 4096  # rows per block: memory stays bounded for any number of rows (at fit and at prediction)
ATTENTION_ENTRIES, HELD_ENTRIES = 1 << 21, 1 << 24  # see network_batch


def network_batch(keys: int, held: int = 0) -> int:
    """Rows the network predicts at once when each attends over ``keys`` keys: a block's (rows x keys) attention
    matrices of about ATTENTION_ENTRIES entries stay in the processor's caches, at least 512 rows (unless what the
    rows hold bounds them, below) keep the keys' own pass (made again for each block) small; at the defaults (4,096
    keys) a third faster than 4,096 rows, within 10 % of the fastest from 0 to 14,745 keys
    (``benchmarks/predict_blocks.py``). Where a row holds more (``held`` entries a row:
    ``MetaNeighborhoods.row_entries``, the gathered path's similarities and its tensors at each row's keys,
    per-example copies of adapted weights) a block stays within about HELD_ENTRIES such entries, however wide the
    layers or large the dictionary."""
    rows = min(PREDICT_BATCH, max(512, ATTENTION_ENTRIES // max(keys, 1)))
    return min(rows, max(1, HELD_ENTRIES // held)) if held else rows


def prediction_rows(model) -> int:
    """Rows a ``MetaNeighborhoods`` network predicts at once outside training (``network_batch``): sized to the keys
    every row meets, and to what else a row holds (``row_entries``)."""
    return network_batch(0 if model.vanilla else model.dictionary.size, model.row_entries())


def blocks(X, rows: np.ndarray | None = None, size: int | None = None):
    """``(offset, dense float block)`` of X's rows (or of ``rows``, indices into X), ``size`` (PREDICT_BATCH) at a
    time: a sparse table is densified one block at a time, never whole."""
    n, size = X.shape[0] if rows is None else len(rows), size or PREDICT_BATCH
    for i in range(0, n, size):
        block = X[i : i + size] if rows is None else X[rows[i : i + size]]
        yield i, block.toarray() if sp.issparse(block) else block


def in_blocks(function, X, rows: np.ndarray | None = None, size: int | None = None) -> np.ndarray:
    """``function(offset, dense block)`` of each of ``blocks``, stacked in one array allocated at the first block:
    small answers kept among each block's large temporaries pinned the allocator's heap, which then grew with the
    rows (2 GB for 150,000 rows predicted in blocks of 512, against 0.1 GB so). At least one row: the estimators
    refuse empty tables before."""
    out = None
    for i, block in blocks(X, rows, size):
        answer = np.asarray(function(i, block))
        if out is None:
            out = np.empty((X.shape[0] if rows is None else len(rows), *answer.shape[1:]), answer.dtype)
        out[i : i + len(answer)] = answer
    if out is None:
        raise ValueError("no rows to take in blocks")
    return out


def training_rows(sample_weight, X) -> tuple[np.ndarray, np.ndarray | None]:
    """(rows fit learns from, their weights): all rows and None without ``sample_weight``; otherwise the rows of
    positive weight, so that a zero weight is the same as dropping the row (it never enters a statistic, a batch,
    the validation split or the keys); so is a weight float32 cannot tell from 0 beside the largest (a ratio below
    about 1e-45), which the network's loss would take as 0 (a batch of them only: 0 / 0). Weights are checked as
    scikit-learn checks them."""
    if sample_weight is None:
        return np.arange(X.shape[0]), None
    weights = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
    rows = np.flatnonzero(weights > 0)
    if not len(rows):
        return rows, weights[rows]
    # only ratios of weights count: brought to a largest weight in [1, 2) by a power of two, which is exact (the fit
    # is the one the weights given make), so that float32 flushes no weight to 0 but those negligible beside it
    scaled = np.ldexp(weights[rows], 1 - np.frexp(weights[rows].max())[1])
    kept = scaled.astype(np.float32) > 0
    if not kept.all():  # said: unlike a zero weight, the user gave these rows a weight
        warnings.warn(f"{int((~kept).sum())} rows of positive sample_weight are dropped as weight 0: float32 cannot "
                      "hold their weights beside the largest (a ratio below about 1e-45)", UserWarning,
                      stacklevel=outside_level())  # the user's fit
    return rows[kept], scaled[kept]


CONSTANT = 1e-12  # a deviation this small against a column's magnitude counts as none (see standardiser)


def standardiser(a, weights: np.ndarray | None = None, rows: np.ndarray | None = None, target: bool = False):
    """Mean and scale of each column of ``a`` (n, d), dense or sparse, over ``rows`` (default: all) with their
    ``weights`` (default: equal): the weighted mean and population standard deviation (ddof 0). A column whose
    deviation is at most ``CONSTANT`` times its largest magnitude is constant: the mean's rounding over many rows
    reaches 4e-14 of it (naval's constant 0.998), and real variation below the threshold (1e8 + 1e-5 z) is lost;
    a corrected two-pass sum would tell them apart but move a few float32 inputs of energy and naval, so that
    Table 2's runs no longer replay. As an input a constant column keeps scale 1, or its magnitude where that is
    larger, so that it stays near 0 however large its value (the rounding of its mean is relative to that
    magnitude: with scale 1, a column of 1e30 gave inputs of 1e14), while a new value at prediction is not blown
    up by a small constant's scale; as a ``target`` it keeps scale 1, since predictions multiply the network's
    error by it (with its magnitude, a constant 1e9 was predicted off by 3.8e8).

    Computed on the columns divided by their largest magnitude, so that values near the float64 limit (1e155
    squared, 1e300 summed) never overflow. A dense ``a`` is read PREDICT_BATCH rows at a time, with no temporary as
    large as ``a``; a sparse one through scikit-learn's sparse statistics, without densifying it.
    """
    if sp.issparse(a) and rows is not None:
        a, rows = a[rows], None  # a sparse copy of those rows
    peak = _column_peaks(a, rows)
    mean, std = _sparse_moments(a, weights, peak) if sp.issparse(a) else _dense_moments(a, weights, rows, peak)
    mean, scale = mean * peak, std * peak
    constant = scale <= CONSTANT * peak
    if constant.any() and not target:  # a target keeps scale 1: its variation stays
        _warn_if_varying(a, rows, np.flatnonzero(constant))
    return mean, np.where(constant, 1.0 if target else np.maximum(peak, 1.0), scale)


def _warn_if_varying(a, rows, columns: np.ndarray) -> None:
    """A warning naming the input ``columns`` taken as constant whose values differ all the same: their variation,
    below ``CONSTANT`` of their magnitude (1e12 + a spread of 1), is lost at the scale of that magnitude, which a
    user can prevent by taking the offset off (a column whose values are all equal, as naval's, says nothing)."""
    if sp.issparse(a):  # its own statistics: never densified
        low, high = min_max_axis((a if rows is None else a[rows])[:, columns], axis=0)
    else:  # one pass over the blocks for both ends
        spans = [(part.min(axis=0), part.max(axis=0)) for part in (block[:, columns] for _, block in blocks(a, rows))]
        low, high = np.min([low for low, _ in spans], axis=0), np.max([high for _, high in spans], axis=0)
    varying = columns[low != high].tolist()
    if varying:
        warnings.warn(f"column(s) {varying[:10]} vary by less than {CONSTANT:g} of their magnitude: taken as "
                      "constant, that variation is lost; subtract their offset (their median, say) to keep it",
                      UserWarning, stacklevel=outside_level())


def _column_peaks(a, rows) -> np.ndarray:
    """The largest magnitude in each column (1 for a column of zeros)."""
    if sp.issparse(a):
        peak = np.maximum(*(np.abs(extreme) for extreme in min_max_axis(a, axis=0)))
    else:
        peak = np.max([np.abs(block).max(axis=0) for _, block in blocks(a, rows)], axis=0)
    return np.where(peak > 0, peak, 1.0)


def _dense_moments(a: np.ndarray, weights, rows, peak) -> tuple[np.ndarray, np.ndarray]:
    """(mean, standard deviation) of the columns divided by ``peak``, a block of rows at a time."""

    def column_sum(i: int, block: np.ndarray) -> np.ndarray:  # (weighted) column sums of the block at offset i
        return block.sum(axis=0) if weights is None else weights[i : i + len(block)] @ block

    total = (a.shape[0] if rows is None else len(rows)) if weights is None else weights.sum()
    binade = np.ldexp(1.0, np.frexp(peak)[1] - 1)  # a power of two: dividing by it is exact, a sum cannot overflow
    mean = sum(column_sum(i, block / binade) / (peak / binade) for i, block in blocks(a, rows)) / total
    squares = sum(column_sum(i, np.square(block / peak - mean)) for i, block in blocks(a, rows))
    return mean, np.sqrt(squares / total)


def _sparse_moments(a, weights, peak) -> tuple[np.ndarray, np.ndarray]:
    """(mean, standard deviation) of the columns divided by ``peak``, from the sparse matrix itself."""
    mean, variance = mean_variance_axis(a @ sp.diags(1.0 / peak), axis=0, weights=weights)
    return mean, np.sqrt(variance)


def farthest(X, row: int, mean: np.ndarray, scale: np.ndarray) -> str:
    """Where row ``row`` of X (dense or CSR) lies farthest from the training data, in training standard deviations:
    what to say beside answers that came out not finite (a value far outside, squared in a distance, overflows)."""
    values = np.asarray(X[row].toarray() if sp.issparse(X) else X[row], dtype=np.float64).ravel()
    with np.errstate(over="ignore", invalid="ignore"):
        distance = np.abs((values - mean) / scale)
    feature = int(np.argmax(np.where(np.isnan(distance), -1.0, distance)))
    return (f"; row {row}'s feature {feature} ({values[feature]:.6g}) lies {distance[feature]:.3g} standard "
            "deviations from the training mean")


def standardise(X: np.ndarray, mean: np.ndarray, scale: np.ndarray, offset: int = 0) -> np.ndarray:
    """Dense rows on the training scale, in float32; a value that lands beyond float32 there is refused, by row
    (counted from ``offset``) and feature, rather than turned into inf and a NaN prediction."""
    with np.errstate(over="ignore"):
        rows = ((X - mean) / scale).astype(np.float32, order="C")  # a data frame's columns: the same sums as rows
    if not np.isfinite(rows).all():
        row, feature = np.argwhere(~np.isfinite(rows))[0]
        raise ValueError(f"row {offset + row}, feature {feature}: {float(X[row, feature]):.6g} lies too far outside "
                         f"the training data (mean {mean[feature]:.4g}, scale {scale[feature]:.4g}) to predict")
    return rows


def standardised_rows(X, rows: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``standardise(X[rows])`` block by block: fit's one float32 copy of the training rows, without float64
    temporaries (or a densified sparse table) as large as the table."""
    return in_blocks(lambda i, block: standardise(block, mean, scale, i), X, rows)


def numeric_columns(X):
    """``X``; a pandas data frame with a column that holds no numbers (text, dates) is refused naming it: numpy's own
    error names only a value. A column whose values are numbers under another dtype (object, numeric categories or
    text) passes, as scikit-learn's estimators take it, its missing values (``pd.NA``, ``None``) as NaN, which
    scikit-learn then refuses as it refuses a NaN in a float column; other frames (polars) are left to
    scikit-learn."""
    if hasattr(X, "iloc") and hasattr(X, "columns"):  # not a Series: scikit-learn says it is not 2-D
        bad, filled = [], {}
        for i, (name, dtype) in enumerate(zip(X.columns, X.dtypes)):
            column = X.iloc[:, i]
            if _kind(dtype) == "O" and column.isna().any():  # numpy reads None as NaN, but not pandas' NA
                column = filled[i] = column.astype(object).where(column.notna(), np.nan)
            if not _numbers(column, dtype):
                bad.append(str(name))
        if bad:
            raise ValueError(f"X has non-numeric column(s) {', '.join(map(repr, bad[:5]))}: encode them (e.g. with "
                             "OneHotEncoder in a pipeline) or drop them first")
        if filled:  # a copy: the caller's frame is left as it is
            X = X.copy()
            for i, column in filled.items():
                X.isetitem(i, column)
    return X


DATES = ("datetime64", "datetime", "date", "timedelta64", "timedelta", "period")  # pandas' infer_dtype names


def _numbers(column, dtype) -> bool:
    """Whether a data frame's column reads as numbers; dates and durations do not (as nanoseconds, a poor feature),
    whether of a date dtype or numpy's dates held as objects (which numpy reads as numbers)."""
    kind = _kind(dtype)
    if kind in "mM":
        return False
    if kind in "biufc":
        return True
    from pandas.api.types import infer_dtype  # a data frame's column: pandas is there

    held = infer_dtype(column, skipna=True)
    if held in DATES or held.startswith("mixed") and any(isinstance(value, (np.datetime64, np.timedelta64))
                                                         for value in column):  # "mixed-integer" too
        return False
    try:
        np.asarray(column, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return False
    return True


def _kind(dtype) -> str:
    return getattr(dtype, "kind", "O")


def early_stopping_split(n: int, fraction: float, rng: np.random.RandomState,
                         labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(training, validation) positions among n rows, ``fraction`` of them held out (0: none); with a classifier's
    ``labels``, stratified where every class has two rows or more and each side a row per class (as scikit-learn's
    MLPClassifier: a minority class left out of the validation rows would not count in early stopping or the
    vanilla fallback). Too few rows for two on each side is said, not passed over: neither early stopping nor the
    vanilla fallback can then run."""
    n_valid = int(round(fraction * n))
    if n_valid >= 2 and n - n_valid >= 2:
        counts = None if labels is None else np.unique(labels, return_counts=True)[1]
        if counts is not None and counts.min() >= 2 and min(n_valid, n - n_valid) >= len(counts):
            return tuple(train_test_split(np.arange(n), test_size=n_valid, stratify=labels, random_state=rng))
        order = rng.permutation(n)
        return order[n_valid:], order[:n_valid]
    if fraction > 0:
        side = "validation" if n_valid < 2 else "training"
        warnings.warn(f"{n} training rows leave {n_valid} for validation and {n - n_valid} for training, too few for "
                      f"{side}: early stopping on the training loss, and no vanilla fallback", UserWarning,
                      stacklevel=outside_level())  # the user's fit
    return np.arange(n), None
