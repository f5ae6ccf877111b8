"""The tests of repeated cross-validation against scipy and against the formula of Nadeau & Bengio (2003)."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from meta_neighborhoods.significance import compare, corrected_t_test, paired_t_test, resolvable_difference

OURS = [0.50, 0.40, 0.60, 0.45, 0.52, 0.41]
THEIRS = [0.55, 0.48, 0.61, 0.52, 0.50, 0.47]


def test_the_paired_test_is_scipys():
    assert paired_t_test(OURS, THEIRS) == pytest.approx(stats.ttest_rel(OURS, THEIRS).pvalue)
    assert paired_t_test(OURS[:4], THEIRS[:4]) == pytest.approx(0.04272, abs=1e-5)  # t = -3.392 on 3 df


def test_the_corrected_test_inflates_the_variance_by_the_overlap_of_training_sets():
    d = np.subtract(OURS, THEIRS)
    t = d.mean() / math.sqrt((1 / 6 + 1 / (3 - 1)) * d.var(ddof=1))  # 3-fold CV: n_test / n_train = 1 / 2
    assert corrected_t_test(OURS, THEIRS, folds=3) == pytest.approx(2 * stats.t.sf(abs(t), 5))
    assert corrected_t_test(OURS, THEIRS, folds=3) > paired_t_test(OURS, THEIRS)  # less confident than naive


def test_the_resolvable_difference_is_where_the_corrected_test_reaches_the_level():
    spread = np.subtract(OURS, THEIRS) - np.mean(np.subtract(OURS, THEIRS))  # same variance, mean zero
    for level in (0.05, 0.2):
        edge = resolvable_difference(OURS, THEIRS, folds=3, level=level)
        assert corrected_t_test(spread + edge, np.zeros(6), folds=3) == pytest.approx(level)
        assert corrected_t_test(spread + 0.9 * edge, np.zeros(6), folds=3) > level  # a smaller gap is not seen
    assert resolvable_difference(OURS, THEIRS, folds=3, level=0.2) < resolvable_difference(OURS, THEIRS, folds=3)
    assert resolvable_difference([0.3], [0.5], folds=2) is None
    assert resolvable_difference([0.3, 0.4], [0.3, 0.4], folds=2) is None  # identical errors: no test, no gap
    assert resolvable_difference([1.0, 2.0, 3.0], [0.5, 1.5, 2.5], folds=3) == 0.0  # a constant gap: any size


def test_no_test_where_none_exists():
    assert corrected_t_test([0.3, 0.4], [0.3, 0.4], folds=2) is None  # no difference at all
    assert paired_t_test([0.3], [0.5]) is None  # one pair
    assert paired_t_test([0.5, 1.5], [1.0, 2.0]) == 0.0  # the same difference on every fold


def test_compare_gives_every_figure_of_the_reports():
    errors = {"mn": OURS, "vanilla": THEIRS, "knn": [0.7] * 6}
    summary = compare(errors, "mn", folds=3, baseline="vanilla")
    assert summary["mean"]["mn"] == pytest.approx(np.mean(OURS)) and summary["std"]["knn"] == pytest.approx(0.0)
    assert summary["ratio"]["mn"] == pytest.approx(np.mean(OURS) / np.mean(THEIRS)) and summary["ratio"]["vanilla"] == 1
    assert summary["reference_wins"] == {"vanilla": 5, "knn": 6}
    assert summary["p_values"]["vanilla"] == corrected_t_test(OURS, THEIRS, 3)
    assert summary["resolvable"]["vanilla"] == resolvable_difference(OURS, THEIRS, 3)
    assert summary["p_values_first_seed"]["vanilla"] == paired_t_test(OURS[:3], THEIRS[:3])
    assert "mn" not in summary["p_values"]
    json.dumps(summary)  # JSON-able as it is
    assert summary["std"]["mn"] == pytest.approx(np.std(OURS, ddof=0)) != pytest.approx(np.std(OURS, ddof=1))
    tied = compare({"mn": OURS, "vanilla": [*OURS[:2], *THEIRS[2:]]}, "mn", folds=3)  # the fallback's equal errors
    assert tied["reference_wins"]["vanilla"] == sum(a < b for a, b in zip(OURS[2:], THEIRS[2:]))  # a tie is no win
    assert tied["reference_ties"]["vanilla"] == 2 and summary["reference_ties"] == {"vanilla": 0, "knn": 0}
