"""Helpers several test modules share (imported as ``gloo_processes`` is: pytest puts this folder on the path)."""

import csv

import numpy as np
import pytest

from meta_neighborhoods.datasets.files import shared_data_dir

SHARED = shared_data_dir()
needs_shared = pytest.mark.skipif(
    SHARED is None or not SHARED.is_dir(),
    reason="../shared/data (or $META_NEIGHBORHOODS_DATA) is not present in this checkout"
)


def csv_rows(path) -> list[dict]:
    """A CSV file's rows as dicts by column name (a run's ``metrics.csv``)."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def noisy_line(n: int = 200, d: int = 5, seed: int = 0):
    """(X, y): ``d`` normal features and a target linear in the first, with noise of half its spread."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, X[:, 0] + 0.5 * rng.normal(size=n)
