"""The scikit-learn estimators: sklearn's own compliance checks, and behaviour on real and synthetic tables."""

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from meta_neighborhoods.estimators import MetaNeighborhoodsClassifier, MetaNeighborhoodsRegressor

FAST = dict(hidden_layer_sizes=(16,), dictionary_size=8, max_epochs=30, learning_rate=1e-2, n_iter_no_change=5,
            batch_size=32, random_state=0)
# Predictions are float32 matrix products whose rounding depends on how many rows share a product, so
# predicting a subset can differ from predicting everything in the 7th significant digit (seen: 8.6e-6
# relative, 1.8e-7 absolute), just past these checks' 1e-7 tolerance.
FLOAT32_ROUNDING = {
    "check_methods_subset_invariance": "float32 rounding depends on the batch (differences ~1e-7)",
    "check_methods_sample_order_invariance": "float32 rounding depends on the batch (differences ~1e-7)",
}


@parametrize_with_checks(
    [MetaNeighborhoodsRegressor(**FAST), MetaNeighborhoodsClassifier(**FAST)],
    expected_failed_checks=lambda estimator: FLOAT32_ROUNDING,
)
def test_scikit_learn_compliance(estimator, check):
    check(estimator)
