"""scipy.sparse rows in the estimators: the same model and answers as dense rows, read a block at a time."""

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

import meta_neighborhoods.estimator_rows as estimator_rows
from meta_neighborhoods.estimators import MetaNeighborhoodsClassifier, MetaNeighborhoodsRegressor

FAST = dict(hidden_layer_sizes=(8,), dictionary_size=6, max_epochs=15, learning_rate=1e-2, batch_size=16,
            n_iter_no_change=5, random_state=0)


def _sparse_table(n=80, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * 4 + 1
    X[rng.random((n, d)) < 0.6] = 0.0
    y = np.sin(X[:, 0]) + 0.3 * X[:, 1]
    return X, y, (X[:, 0] > 0.5).astype(int) + (X[:, 1] > 0.5), rng.integers(0, 3, size=n)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("container", [sp.csr_matrix, sp.csc_matrix, sp.csr_array], ids=["csr", "csc", "csr_array"])
@pytest.mark.parametrize("cls", [MetaNeighborhoodsRegressor, MetaNeighborhoodsClassifier])
def test_sparse_rows_give_the_answers_of_dense_rows(cls, container, weighted, monkeypatch):
    monkeypatch.setattr(estimator_rows, "PREDICT_BATCH", 7)  # several blocks, at fit and at prediction
    X, y, labels, weights = _sparse_table()
    target = y if cls is MetaNeighborhoodsRegressor else labels
    fit = {"sample_weight": weights} if weighted else {}
    dense = cls(**FAST).fit(X, target, **fit)
    sparse = cls(**FAST).fit(container(X), target, **fit)
    np.testing.assert_allclose(sparse.x_mean_, dense.x_mean_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sparse.x_scale_, dense.x_scale_, rtol=1e-12)
    for model in (dense, sparse):
        np.testing.assert_allclose(model.predict(container(X)), dense.predict(X), rtol=1e-5, atol=1e-6)
        assert model.score(container(X), target) == pytest.approx(dense.score(X, target), rel=1e-5)
    if cls is MetaNeighborhoodsClassifier:
        np.testing.assert_allclose(sparse.predict_proba(container(X)), dense.predict_proba(X), rtol=1e-5, atol=1e-6)


def _peak_bytes(action) -> int:
    """The most memory numpy (and scipy) held at once during ``action()``, beyond what they held before."""
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_sparse_table_is_densified_a_block_at_a_time_never_whole(monkeypatch):
    """8,000 x 1,000 at 0.1 % density: 64 MB as dense float64, 0.1 MB sparse. Prediction holds a few blocks of
    50 rows; fit holds its float32 copy of the training rows (half the dense size) and no more."""
    monkeypatch.setattr(estimator_rows, "PREDICT_BATCH", 50)
    X = sp.random(8000, 1000, density=0.001, format="csr", random_state=np.random.RandomState(0))
    y = np.asarray(X[:, :10].sum(axis=1)).ravel()
    dense_bytes = 8 * X.shape[0] * X.shape[1]
    model = MetaNeighborhoodsRegressor(hidden_layer_sizes=(2,), dictionary_size=2, max_epochs=1,
                                       batch_size=8000, early_stopping=False, random_state=0)
    model.fit(X[:100], y[:100])  # what a first fit loads lazily (torch's own modules) is no part of the measure
    assert _peak_bytes(lambda: model.fit(X, y)) < 0.6 * dense_bytes
    assert _peak_bytes(lambda: model.predict(X)) < 0.05 * dense_bytes
    assert _peak_bytes(lambda: model.score(X, y)) < 0.05 * dense_bytes
