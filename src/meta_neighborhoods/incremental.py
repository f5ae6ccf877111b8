"""``partial_fit``: the estimators' training one epoch a call, for rows that come in batches (scikit-learn's
incremental learning, as ``MLPRegressor.partial_fit``).

A call is ``fit`` for one epoch, without early stopping: the first on its own rows (their columns' scales, a
dictionary of at most their rows), a later one on the scales and dictionary it learnt. Early stopping, the vanilla
fallback and the second phase (``refine_factor``) need validation rows and do not run. Unlike warm starts, the calls
train as one run: each goes on from the last one's training state (``training_state.Carried``: the weights as
trained, of which ``model_`` holds the average, AdamW's moments, the weight average, the generators).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import LabelEncoder

from .estimator_settings import refuse_continued_leave_one_out, typed
from .validation import outside_level, shown

ONE_EPOCH = {"warm_start": True, "max_epochs": 1, "early_stopping": False}  # what a call fits with


def one_epoch(estimator, fit):
    """``fit()`` (the estimator's fit of the caller's rows) as a call of ``partial_fit``, the estimator's parameters
    left as they were; ``loss_curve_``, ``n_iter_`` and ``best_epoch_`` count the epochs of every call since the
    first, after those of a ``fit`` up to the epoch it kept (the one this call goes on from), the last the one kept."""
    if estimator.leave_one_out:  # a call after the first goes on as a warm start does
        refuse_continued_leave_one_out("partial_fit")
    first = not hasattr(estimator, "model_")
    curve = [] if first else list(estimator.loss_curve_[:estimator.best_epoch_])
    given = {name: getattr(estimator, name) for name in ONE_EPOCH}
    estimator.set_params(**ONE_EPOCH)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=ConvergenceWarning)  # max_epochs=1 ended it, as asked
            fit()
    finally:
        estimator.set_params(**given)
    estimator.loss_curve_ = curve + list(estimator.loss_curve_)
    estimator.n_iter_ = estimator.best_epoch_ = len(estimator.loss_curve_)
    keys = estimator.network_["dictionary_size"]
    if first and 0 < keys < estimator.dictionary_size:  # what no later call can change, said once
        warnings.warn(f"partial_fit's first call trained on {keys} rows: the dictionary holds {keys} keys, not "
                      f"dictionary_size={estimator.dictionary_size}, and the columns' scales are those rows', for "
                      "every later call; give the first call as many representative rows", UserWarning,
                      stacklevel=outside_level())
    return estimator


def known_classes(estimator, labels: np.ndarray, classes) -> np.ndarray:
    """The classes of a classifier's ``partial_fit``: ``classes`` on the first call, which a batch's ``labels`` need
    not all hold (as scikit-learn asks), the fitted ones after (which ``classes``, if given again, must be); every
    label must be one of them, by type and value ([False, True] are not [0, 1])."""
    fitted = hasattr(estimator, "model_")
    if classes is None and not fitted:
        raise ValueError("classes must be given to the first call of partial_fit: every class of all the calls "
                         "(np.unique of all the labels), since a batch need not hold them all")
    shape = None if classes is None else np.shape(classes)
    if shape is not None and (shape == () or shape[1:] not in ((), (1,))):  # a set, a matrix (a column is taken,
        # with scikit-learn's warning): LabelEncoder would blame y
        raise ValueError(f"classes must be a list or 1-D array of the class labels, got a {type(classes).__name__}"
                         + (f" of shape {shape}" if shape else ""))
    given = None if classes is None else LabelEncoder().fit(np.asarray(classes)).classes_
    known = estimator.classes_ if fitted else given
    if fitted and given is not None and typed(given) != typed(known):
        raise ValueError(f"partial_fit continues a network of classes {shown(known.tolist())}, but classes gives "
                         f"{shown(given.tolist())}")
    if len(known) < 2:
        raise ValueError(f"classes must hold at least 2 classes, got {shown(known.tolist())}")
    allowed = set(typed(known))
    unseen = [label for label in np.unique(labels).tolist() if typed([label])[0] not in allowed]
    if unseen:
        raise ValueError(f"y has labels {shown(unseen)} that are not among the classes {shown(known.tolist())}")
    return known
