"""Comparing methods over repeated k-fold cross-validation: which differences the folds can tell apart.

Errors of every method come as one list per method, in the same (seed, fold) order. Two tests of a reference
method against each other one:

* the paper's plain paired t-test over the folds of one repeat;
* the corrected repeated-CV t-test of Nadeau & Bengio (2003): over all r x k (seed, fold) pairs, with the
  variance of the mean difference inflated by ``n_test / n_train``, because the training sets of different
  folds overlap and their errors are not independent. The plain test over r x k pairs would be far too
  confident; this one is the usual choice for repeated CV (Bouckaert & Frank 2004).

A p-value is None (JSON null) where no test exists: fewer than two pairs, or no difference at all. Reports show
one below ``SMALLEST_SHOWN`` as such (``shown_p``): where the difference is (nearly) the same on every fold, as
whole misclassified rows often are, the t-test gives any small value, 0 for a constant one, which its assumption
of normal differences cannot bear out.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


SMALLEST_SHOWN = 1e-4


def shown_p(p: float | None, digits: int = 3) -> str:
    """A p-value as the reports write it: '—' where no test exists, '< 0.0001' below ``SMALLEST_SHOWN``."""
    return "—" if p is None else f"< {SMALLEST_SHOWN:g}" if p < SMALLEST_SHOWN else f"{p:.{digits}g}"


def _t_test(differences: np.ndarray, variance_factor: float) -> float | None:
    """Two-sided p-value of mean(differences) = 0, with Var(mean) = variance_factor * sample variance."""
    if len(differences) < 2 or not differences.any():
        return None
    mean, variance = differences.mean(), differences.var(ddof=1)
    if variance == 0.0:  # the same nonzero difference on every fold: as certain as a t-test gets
        return 0.0
    t = mean / math.sqrt(variance_factor * variance)
    return float(2 * stats.t.sf(abs(t), df=len(differences) - 1))


def _differences(ours, theirs) -> np.ndarray:
    return np.asarray(ours, dtype=float) - np.asarray(theirs, dtype=float)


def _corrected_factor(pairs: int, folds: int) -> float:
    """Nadeau & Bengio's Var(mean) / sample variance: 1 / J + n_test / n_train, n_test / n_train = 1 / (folds - 1)."""
    return 1.0 / max(pairs, 1) + 1.0 / (folds - 1)


def paired_t_test(ours, theirs) -> float | None:
    """The plain paired t-test (``scipy.stats.ttest_rel``) of two methods' errors on the same folds."""
    differences = _differences(ours, theirs)
    return _t_test(differences, 1.0 / max(len(differences), 1))


def corrected_t_test(ours, theirs, folds: int) -> float | None:
    """Nadeau & Bengio's corrected resampled t-test over all (seed, fold) pairs of repeated ``folds``-fold CV,
    with the variance of the mean inflated by ``_corrected_factor``."""
    differences = _differences(ours, theirs)
    return _t_test(differences, _corrected_factor(len(differences), folds))


def resolvable_difference(ours, theirs, folds: int, level: float = 0.05) -> float | None:
    """The smallest mean difference the corrected test would call significant at ``level``, given how much these
    differences vary from (seed, fold) to (seed, fold): how fine a comparison the protocol can see on this table.
    None with fewer than two pairs, or identical errors (the test is undefined; a constant nonzero difference is
    resolved at any size, 0)."""
    differences = _differences(ours, theirs)
    n = len(differences)
    if n < 2 or not differences.any():
        return None
    scale = math.sqrt(_corrected_factor(n, folds) * differences.var(ddof=1))
    return float(stats.t.ppf(1 - level / 2, df=n - 1) * scale)


def compare(errors: dict[str, list[float]], reference: str, folds: int, baseline: str | None = None) -> dict:
    """Every figure the reports give, per method: mean and std over all (seed, fold) errors (ddof=0), the ratio
    of its mean to ``baseline``'s (None where that is 0), and against ``reference``: folds the reference wins and
    ties (the vanilla fallback's network equals vanilla's on the folds it keeps it), the corrected test over
    all pairs, the smallest difference that test could see (``resolvable_difference``) and the plain paired test
    over the first ``folds`` pairs (the first seed, as the paper)."""
    ours = errors[reference]
    summary = {"mean": {}, "std": {}, "ratio": {}, "reference_wins": {}, "reference_ties": {}, "p_values": {},
               "resolvable": {}, "p_values_first_seed": {}}
    for name, theirs in errors.items():
        summary["mean"][name] = float(np.mean(theirs))
        summary["std"][name] = float(np.std(theirs))
        if baseline in errors:  # None against a baseline without error (a classifier may make none)
            base = float(np.mean(errors[baseline]))
            summary["ratio"][name] = float(np.mean(theirs) / base) if base > 0 else None
        if name != reference:
            summary["reference_wins"][name] = int(np.sum(np.asarray(ours) < np.asarray(theirs)))
            summary["reference_ties"][name] = int(np.sum(np.asarray(ours) == np.asarray(theirs)))
            summary["p_values"][name] = corrected_t_test(ours, theirs, folds)
            summary["resolvable"][name] = resolvable_difference(ours, theirs, folds)
            summary["p_values_first_seed"][name] = paired_t_test(ours[:folds], theirs[:folds])
    return summary
