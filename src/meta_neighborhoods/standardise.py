"""Rows going into the estimators: numeric columns only, and a column scale that cannot overflow."""

from __future__ import annotations

import numpy as np

PREDICT_BATCH = 4096  # rows per block: memory stays bounded for any number of rows (at fit and at prediction)


def standardiser(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of each column of ``a`` (n, d); constant columns keep scale 1 so they stay finite.

    Computed on the columns divided by their largest magnitude, so that values near the float64 limit (1e155
    squared, 1e300 summed) never overflow; the squared deviations are summed PREDICT_BATCH rows at a time, with
    no temporary as large as ``a``.
    """
    peak = np.abs(a).max(axis=0) if len(a) else np.ones(a.shape[1:])
    peak = np.where(peak > 0, peak, 1.0)
    mean = sum(a[i : i + PREDICT_BATCH].sum(axis=0) / peak for i in range(0, len(a), PREDICT_BATCH)) / len(a)
    squares = sum(np.square(a[i : i + PREDICT_BATCH] / peak - mean).sum(axis=0) for i in range(0, len(a), PREDICT_BATCH))
    mean, scale = mean * peak, np.sqrt(squares / len(a)) * peak
    return mean, np.where(scale > 1e-12 * peak, scale, 1.0)


def numeric_columns(X):
    """``X``; a data frame with text or other non-numeric columns is refused naming them (numpy's own error
    names only a value)."""
    if hasattr(X, "columns") and hasattr(X, "dtypes"):
        bad = [str(c) for c, kind in zip(X.columns, X.dtypes) if getattr(kind, "kind", "O") not in "biufc"]
        if bad:
            raise ValueError(f"X has non-numeric column(s) {', '.join(map(repr, bad[:5]))}: encode them (e.g. with "
                             "OneHotEncoder in a pipeline) or drop them first")
    return X
