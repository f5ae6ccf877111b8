"""sample_weight in the estimators' fit: integer weights act as repeated rows, zero weights as dropped rows, and
weights reach the standardisation, the training loss, the validation loss and the choice of keys."""

import warnings

import numpy as np
import pytest

from meta_neighborhoods.estimators import MetaNeighborhoodsClassifier, MetaNeighborhoodsRegressor
from meta_neighborhoods.estimator_rows import standardise

# Full-batch training without a validation split, random keys and no slot dropout (its masks are drawn per row):
# here a weight of k is k copies of the row.
FULL_BATCH = dict(hidden_layer_sizes=(8,), dictionary_size=6, max_epochs=25, learning_rate=1e-2, batch_size=1000,
                  early_stopping=False, key_init="gaussian", slot_dropout=0.0, random_state=0)
MINI_BATCH = dict(hidden_layer_sizes=(8,), dictionary_size=6, max_epochs=25, learning_rate=1e-2, batch_size=8,
                  n_iter_no_change=5, random_state=0)
TOLERANCE = dict(rtol=1e-5, atol=1e-5)  # float32 networks: a weighted sum rounds unlike a sum over copies


def _table(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) * 3 + 5
    y = np.sin(X[:, 0]) + 0.3 * X[:, 1]
    labels = np.array(["a", "b", "c"])[(X[:, 0] > 5).astype(int) + (X[:, 1] > 6)]
    return X, y, labels, rng.integers(0, 4, size=n)


def _answers(model, X):
    return model.predict_proba(X) if hasattr(model, "predict_proba") else model.predict(X)


CASES = [(MetaNeighborhoodsRegressor, 1), (MetaNeighborhoodsClassifier, 2)]  # which of _table's targets


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("dictionary_size", [6, 0], ids=["neighbours", "vanilla"])
@pytest.mark.parametrize("cls, target", CASES, ids=["regressor", "classifier"])
def test_integer_weights_are_repeated_rows(cls, target, dictionary_size):
    X, *targets, weights = _table()
    y = targets[target - 1]
    params = {**FULL_BATCH, "dictionary_size": dictionary_size}
    weighted = cls(**params).fit(X, y, sample_weight=weights)
    repeated = cls(**params).fit(np.repeat(X, weights, axis=0), np.repeat(y, weights))
    np.testing.assert_allclose(_answers(weighted, X), _answers(repeated, X), **TOLERANCE)
    np.testing.assert_allclose(weighted.x_mean_, repeated.x_mean_, rtol=1e-12)
    np.testing.assert_allclose(weighted.x_scale_, repeated.x_scale_, rtol=1e-12)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("params", [FULL_BATCH, {**FULL_BATCH, "dictionary_size": 0}, MINI_BATCH],
                         ids=["full_batch", "vanilla", "mini_batch_early_stopping_keys_at_rows"])
@pytest.mark.parametrize("cls, target", CASES, ids=["regressor", "classifier"])
@pytest.mark.parametrize("zero", [0.0, 1e-60], ids=["zero", "nil_in_float32"])
def test_zero_weights_are_dropped_rows(cls, target, params, zero):
    """A row of weight 0 never enters anything, so even mini-batches, the validation split and the keys drawn
    from rows match a fit without it; so does a weight float32 cannot tell from 0 beside the others (the loss
    took it as 0, and a batch of such rows alone was NaN)."""
    X, *targets, weights = _table(n=60)
    y, kept = targets[target - 1], weights > 0
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always", UserWarning)
        weighted = cls(**params).fit(X, y, sample_weight=np.where(kept, 1.0, zero))
    dropped_rows = [w for w in said if "dropped as weight 0" in str(w.message)]
    assert len(dropped_rows) == (zero > 0) and all(w.filename == __file__ for w in dropped_rows)  # the caller's fit
    dropped = cls(**params).fit(X[kept], y[kept])
    np.testing.assert_allclose(_answers(weighted, X), _answers(dropped, X), **TOLERANCE)
    assert weighted.network_ == dropped.network_ and weighted.n_iter_ == dropped.n_iter_


def test_weights_change_the_fit():
    """The same rows twice with opposite targets: weighted 9 to 1, the answer leans to the heavy ones."""
    rng = np.random.default_rng(0)
    X = np.repeat(rng.normal(size=(30, 2)), 2, axis=0)
    y = np.tile([1.0, -1.0], 30)
    weights = np.where(y > 0, 9.0, 1.0)
    params = {**FULL_BATCH, "max_epochs": 60}
    plain = MetaNeighborhoodsRegressor(**params).fit(X, y)
    weighted = MetaNeighborhoodsRegressor(**params).fit(X, y, sample_weight=weights)
    assert weighted.y_mean_[0] == pytest.approx(0.8) and plain.y_mean_[0] == pytest.approx(0.0, abs=1e-12)
    assert abs(plain.predict(X).mean()) < 0.2 and weighted.predict(X).mean() > 0.6
    labels = np.where(y > 0, "heavy", "light")
    classifier = MetaNeighborhoodsClassifier(**params).fit(X, labels, sample_weight=weights)
    assert set(classifier.predict(X)) == {"heavy"} and classifier.predict_proba(X)[:, 0].mean() > 0.7


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("cls, target", CASES, ids=["regressor", "classifier"])
def test_only_the_ratios_of_weights_count_whatever_their_scale(cls, target):
    """Weights of 1e-40 or 1e38 are beyond float32 (flushed to 0, or inf): the loss was NaN. A power of two is
    exact, so it changes nothing at all; another factor changes only the weights' float64 rounding."""
    table = _table()
    X, y, weights = table[0], table[target], table[3] + 1.0
    expected = _answers(cls(**MINI_BATCH).fit(X, y, sample_weight=weights), X)
    np.testing.assert_array_equal(_answers(cls(**MINI_BATCH).fit(X, y, sample_weight=weights * 2.0**-140), X),
                                  expected)
    for scale in (1e-300, 1e-40, 1e38, 1e300):
        np.testing.assert_allclose(_answers(cls(**MINI_BATCH).fit(X, y, sample_weight=weights * scale), X),
                                   expected, **TOLERANCE)


def test_the_validation_loss_of_early_stopping_is_weighted():
    """A fifth of the rows are wild outliers of negligible weight: unweighted, those in the validation split
    would make its loss huge; weighted, it stays that of the other rows."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 3))
    y = X[:, 0] + 0.1 * rng.normal(size=300)
    wild = rng.random(300) < 0.2
    y[wild] = 1000.0 * rng.choice([-1.0, 1.0], size=wild.sum())
    model = MetaNeighborhoodsRegressor(**{**MINI_BATCH, "batch_size": 32, "max_epochs": 10}).fit(
        X, y, sample_weight=np.where(wild, 1e-9, 1.0))
    assert model.y_scale_[0] == pytest.approx(1.0, rel=0.2)  # the scale of y is weighted too
    assert model.best_loss_ == min(model.validation_loss_curve_) < 0.5


def test_keys_start_at_rows_of_positive_weight_only():
    """Keys at training rows, as many as there are rows of positive weight: exactly those rows, none of the
    far-off rows of weight 0."""
    X, y, _, _ = _table(n=40)
    X[:10] += 100.0
    weights = np.r_[np.zeros(10), np.ones(30)]
    model = MetaNeighborhoodsRegressor(**{**FULL_BATCH, "dictionary_size": 1000, "key_init": "samples",
                                          "max_epochs": 1, "learning_rate": 1e-12}).fit(X, y, sample_weight=weights)
    assert model.network_["dictionary_size"] == 30
    keys = model.model_.dictionary.keys.detach().numpy()
    rows = standardise(X[10:], model.x_mean_, model.x_scale_)
    np.testing.assert_allclose(np.sort(keys, axis=0), np.sort(rows, axis=0), atol=1e-5)


def test_classes_are_those_of_rows_with_positive_weight():
    X, _, labels, _ = _table(n=60)
    only_a_and_b = np.where(labels == "c", 0.0, 1.0)
    model = MetaNeighborhoodsClassifier(**{**FULL_BATCH, "max_epochs": 2}).fit(X, labels, sample_weight=only_a_and_b)
    assert list(model.classes_) == ["a", "b"] and model.predict_proba(X).shape == (60, 2)
    with pytest.raises(ValueError, match="1 class .'a'. among the rows of sample_weight not negligible beside the "
                                         "largest; a classifier needs"):
        MetaNeighborhoodsClassifier(**FULL_BATCH).fit(X, labels, sample_weight=(labels == "a").astype(float))


@pytest.mark.parametrize("weights, message", [
    (np.zeros(20), "Sample weights must contain at least one non-zero number"),
    (-np.ones(20), "Negative values in data passed to `sample_weight`"),
    (np.r_[np.nan, np.ones(19)], "Input sample_weight contains NaN"),
    (np.ones(19), r"sample_weight.shape == \(19,\), expected \(20,\)"),
])
def test_bad_weights_are_refused_naming_them(weights, message):
    X, y, _, _ = _table(n=20)
    with pytest.raises(ValueError, match=message):
        MetaNeighborhoodsRegressor(**FULL_BATCH).fit(X, y, sample_weight=weights)


def test_weights_average_each_rows_loss_over_its_outputs():
    """With several regression outputs a row's loss is the mean over its outputs, as without weights: unit weights
    give exactly the unweighted loss (a sum over outputs would scale the loss, the clipping and tol with them)."""
    import torch

    from meta_neighborhoods.heads import MLPHead
    from meta_neighborhoods.model import MetaNeighborhoods

    model = MetaNeighborhoods(MLPHead(3, (), 2), task="regression", dictionary_size=0)
    generator = torch.Generator().manual_seed(0)
    prediction, target = torch.randn(5, 2, generator=generator), torch.randn(5, 2, generator=generator)
    torch.testing.assert_close(model.loss(prediction, target, torch.ones(5)), model.loss(prediction, target))
    weight = torch.tensor([1.0, 2.0, 0.0, 1.0, 3.0])
    expected = (weight * ((prediction - target) ** 2).mean(dim=1)).sum() / weight.sum()
    torch.testing.assert_close(model.loss(prediction, target, weight), expected)
