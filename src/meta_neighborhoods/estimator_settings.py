"""The estimators' settings: checked as ``fit`` checks them, and resolved against the data into the description of
the network (what ``save`` records and ``load`` rebuilds).

Functions of an estimator rather than its private methods, so that what runs many fits (``regress``, ``ablate``)
can refuse a setting before it claims a folder or trains anything, as the first fit would refuse it later; and the
warning a fit gives where its settings let ``max_epochs``, not early stopping, end it.
"""

from __future__ import annotations

import functools
import math
import numbers
import types
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets

from .config import (FIELDS, HEADS, MAX_EPOCHS, MAX_WEIGHTS, PERIODIC_EMBEDDING, PERIODIC_FREQUENCIES, SIMILARITIES,
                     MNConfig, auto_similarity, default_temperature)
from .validation import (ConfigError, check_flag, check_int, check_non_negative, check_option, check_positive, is_int,
                         is_positive, is_real, outside_level, shown)


def check_settings(estimator) -> None:
    """The training settings of ``estimator``; the method's own are checked by ``MNConfig`` (``method_config``)."""
    check_int("max_epochs", estimator.max_epochs, maximum=MAX_EPOCHS)  # the command line's bound on epochs
    for name in ("batch_size", "n_iter_no_change"):
        check_int(name, getattr(estimator, name))
    verbose = estimator.verbose
    check_int("verbose", int(verbose) if isinstance(verbose, (bool, np.bool_)) else verbose, 0)
    for flag in ("early_stopping", "leave_one_out", "learn_dictionary", "vanilla_fallback", "warm_start"):
        check_flag(flag, getattr(estimator, flag))
    if isinstance(estimator.random_state, np.random.Generator):  # scikit-learn's refusal names no alternative
        raise ConfigError("random_state must be None, an int or a numpy RandomState, as in scikit-learn, got a numpy "
                          "Generator: give an int (generator.integers(2**32), say)", "random_state")
    if estimator.leave_one_out and estimator.refine_factor is not None:  # the second phase goes on as a warm start
        refuse_continued_leave_one_out("refine_factor")
    need_rows = {"learn_dictionary=False keeps the keys where they start": not estimator.learn_dictionary,
                 "leave_one_out=True hides from each row the key started at it": estimator.leave_one_out}
    for what in (what for what, on in need_rows.items() if on and estimator.key_init != "samples"):
        raise ConfigError(f"{what}: it needs key_init='samples' (the training rows), got "
                          f"key_init={estimator.key_init!r}")
    hidden = estimator.hidden_layer_sizes
    if not (is_int(hidden) and hidden >= 1 or isinstance(hidden, (tuple, list, np.ndarray)) and all(
            is_int(h) and h >= 1 for h in hidden)):
        raise ConfigError(f"hidden_layer_sizes must be a positive integer or a sequence of them (e.g. (128, 128)), "
                          f"got {hidden!r:.80}", "hidden_layer_sizes")
    if not (is_positive(estimator.validation_fraction) and estimator.validation_fraction < 1.0):
        raise ConfigError(f"validation_fraction must be in (0, 1), got {estimator.validation_fraction!r}")
    check_option("similarity", estimator.similarity, ("auto", *SIMILARITIES))
    if isinstance(estimator.head, str):  # a head the package ships, by name; a factory is checked when it is called
        check_option("head", estimator.head, HEADS)
    if estimator.gradient_clip is not None and estimator.gradient_clip != math.inf:  # inf: no clipping, as None
        check_positive("gradient_clip", estimator.gradient_clip)
    check_positive("learning_rate", estimator.learning_rate)
    for name in ("ema_decay", "refine_factor"):  # None: no average, no second phase
        value = getattr(estimator, name)
        if value is not None and not (is_real(value) and 0.0 < value < 1.0):
            raise ConfigError(f"{name} must be None or a number in (0, 1), got {value!r}", name)
    check_non_negative("tol", estimator.tol)
    check_non_negative("weight_decay", estimator.weight_decay)


def method_config(estimator, dictionary_size, similarity: str, temperature: float) -> MNConfig:
    """The method's settings: ``estimator``'s attributes of the same names (a new parameter reaches the network with
    no edit here), with what fit resolved from the data. Its attributes, not ``get_params``: a subclass whose own
    ``__init__`` fixes a setting it does not take (``adapt="all"``) has it only as an attribute."""
    same = {name: getattr(estimator, name) for name in FIELDS if hasattr(estimator, name)}
    return MNConfig(**{**same, "task": estimator._task, "dictionary_size": dictionary_size, "similarity": similarity,
                       "temperature": temperature},
                    **dict.fromkeys(("keys", "values"), "learned" if estimator.learn_dictionary else "fixed"))


def _check_weights(estimator, inputs: int | None, n_outputs: int) -> None:
    """Refuse an MLP head of more than MAX_WEIGHTS weights before it is built: a record's or a typo's width of 10**9
    would otherwise take the machine's memory until the system killed the process, with no word said. ``inputs``
    None: an extractor's width, unknown until it is built (its layers after the first are counted)."""
    if not (estimator.head is None or isinstance(estimator.head, str)):
        return  # a factory's own network
    hidden = estimator.hidden_layer_sizes
    periodic = estimator.head == "periodic"  # each feature beside its embedding, from 2 x frequencies periodic ones
    embedding = PERIODIC_FREQUENCIES * (1 + 2 * PERIODIC_EMBEDDING) + PERIODIC_EMBEDDING if periodic else 0
    widths = [*([] if inputs is None else [inputs * (1 + PERIODIC_EMBEDDING * periodic)]),
              *([hidden] if is_int(hidden) else hidden), n_outputs]
    weights = sum(int(a) * int(b) for a, b in zip(widths[:-1], widths[1:])) + (inputs or 0) * embedding
    if weights > MAX_WEIGHTS:
        on = "after the extractor" if inputs is None else f"on {inputs} inputs"
        raise ConfigError(f"hidden_layer_sizes {shown(hidden)} {on} make {weights:,} weights, more than the "
                          f"{MAX_WEIGHTS:,} a fit builds (4 GB of float32)", "hidden_layer_sizes")


def network_description(estimator, n_features: int, n_outputs: int, n_rows: int, key_features: int,
                        dictionary_size: int, built: bool = True) -> dict:
    """The arguments of the network ``estimator`` builds for this data, fixed at fit and saved with the weights:
    ``load`` rebuilds the same network. Checks every method setting (``MNConfig``) on the way (not ``built``: its
    extractor, if any, is not, and ``key_features`` are the rows' until it is)."""
    _check_weights(estimator, key_features if built or estimator.extractor is None else None, n_outputs)
    similarity, temperature = estimator.similarity, estimator.temperature
    similarity = auto_similarity(estimator._task, key_features) if similarity == "auto" else similarity
    temperature = default_temperature(similarity, key_features) if temperature is None else temperature
    config = method_config(estimator, dictionary_size, similarity, temperature)
    return {"n_features": n_features, "n_outputs": n_outputs,
            "dictionary_size": min(config.dictionary_size, n_rows),  # at most one neighbour per training row
            "similarity": config.similarity, "temperature": config.temperature}


def check_before_fit(estimator, n_rows: int, n_features: int) -> None:
    """The settings of ``estimator`` that its fit on ``n_rows`` rows of ``n_features`` columns would refuse, refused
    now: every parameter's type and range, the method's settings and the seed (the rows themselves are not looked
    at, nor a ``head`` or ``extractor`` factory called)."""
    check_settings(estimator)
    check_random_state(estimator.random_state)
    network_description(estimator, n_features, 1, n_rows, n_features, estimator.dictionary_size, built=False)


def warm_fit(estimator) -> bool:
    """Whether this fit of ``estimator`` continues its fitted network (``warm_start``); the settings are checked
    first."""
    check_settings(estimator)
    warm = estimator.warm_start and hasattr(estimator, "model_")
    if warm and estimator.leave_one_out:  # a first fit is a cold one, which leave-one-out may start
        refuse_continued_leave_one_out("warm_start=True")
    return warm


def refuse_continued_leave_one_out(how: str) -> None:
    """Refuse ``how`` (a warm start, a call of partial_fit after the first, a second phase) for leave-one-out."""
    raise ConfigError(f"{how} with leave_one_out=True cannot go on from a fitted network: that keeps the keys where "
                      "they moved and knows no longer which training row each started at, which leave-one-out hides "
                      "from it", "leave_one_out")


def typed(values) -> tuple:
    """``values`` as (kind, value) pairs, which compare by both: labels [False, True] are not [0, 1], nor "1" 1;
    but 0 and 0.0 are one label (scikit-learn hands a nullable integer column over as floats)."""
    return tuple((_kind(v), v) for v in np.ravel(values).tolist())


def _kind(value) -> type:
    return bool if isinstance(value, bool) else numbers.Real if isinstance(value, numbers.Real) else type(value)


def same_as_fitted(what: str, fitted, given) -> None:
    """A warm start's refusal of a y whose ``what`` (outputs, classes) is not the fitted network's, by type and value:
    classes [False, True] are not [0, 1], which predict would answer."""
    if typed(fitted) != typed(given):
        raise ValueError(f"a warm start (warm_start=True, or a call of partial_fit after the first) continues the "
                         f"fitted network of {what} {shown(fitted)}, but y has {shown(given)}: fit with "
                         "warm_start=False to train a new one")


def check_labels(labels: np.ndarray) -> None:
    """scikit-learn's ``check_classification_targets``, after a check of its own for labels of text mixed with
    others, which it calls of an "unknown" type (and which cannot be sorted into classes)."""
    if labels.dtype == object and len({isinstance(label, str) for label in labels}) > 1:
        text = next(label for label in labels if isinstance(label, str))
        other = next(label for label in labels if not isinstance(label, str))
        raise ValueError(f"the target mixes labels of text and of other types ({text!r:.40} and {other!r:.40}); "
                         "give every label as text, or every one as a number")
    check_classification_targets(labels)


def fit_classes(estimator, labels: np.ndarray, warm: bool, weighted: bool) -> np.ndarray:
    """The classes a classifier's fit learns, those of its ``labels`` (at least two): a warm fit's must be the fitted
    ones, by type and value."""
    found = LabelEncoder().fit(labels).classes_
    if warm:
        same_as_fitted("classes", estimator.classes_.tolist(), found.tolist())
        return estimator.classes_  # of the type fitted: predict answers as before
    if len(found) < 2:
        among = " among the rows of sample_weight not negligible beside the largest" if weighted else ""
        raise ValueError(f"the target has 1 class ({found.tolist()[0]!r}){among}; a classifier needs at least 2")
    return found


def unchanged_if_raised(fit):
    """``fit``, after which a fit that raised (a setting refused late, a bad y, Ctrl-C) leaves the estimator as it
    was: its fitted attributes stay those of its network, which a warm start continues on the scales it learnt on."""
    @functools.wraps(fit)
    def guarded(estimator, *args, **kwargs):
        before = dict(vars(estimator))
        try:
            return fit(estimator, *args, **kwargs)
        except BaseException:
            vars(estimator).clear()
            vars(estimator).update(before)
            raise
    return guarded


def warn_if_cut_short(estimator, phases: list, validated: bool) -> None:
    """One ConvergenceWarning where ``max_epochs``, not early stopping, ended a phase (``EarlyStopped``) of the
    network ``estimator`` kept: the first, or the second of ``refine_factor``."""
    patience = estimator.n_iter_no_change
    cut = tuple(len(run.losses) == estimator.max_epochs and len(run.losses) - run.best_epoch < patience for run in phases)
    if any(cut):
        where = {(True,): "", (True, False): " in its first phase", (False, True): " in its second phase",
                 (True, True): " in both phases"}[cut]
        ended = "early stopping ended it" if validated else "its training loss stopped improving (no validation rows)"
        warnings.warn(f"{type(estimator).__name__} stopped at max_epochs={estimator.max_epochs}{where} before "
                      f"{ended}: its best {'validation' if validated else 'training'} loss, at epoch "
                      f"{estimator.best_epoch_} (the network kept), was not followed by n_iter_no_change="
                      f"{patience} epochs without a better one; raise max_epochs, or lower n_iter_no_change, to let "
                      f"{'early stopping' if validated else 'the training loss'} decide", ConvergenceWarning,
                      stacklevel=outside_level())  # the user's fit


def own_init(cls, init) -> None:
    """Give public estimator ``cls`` its own copy of the shared ``init``, so that a misspelt parameter is reported as
    ``MetaNeighborhoodsRegressor.__init__() got an unexpected keyword argument``, not under the private class's
    name. A subclass with an ``__init__`` of its own (a user's) keeps it."""
    if "__init__" in vars(cls):
        return
    name = f"{cls.__name__}.__init__"
    code = init.__code__.replace(co_qualname=name) if hasattr(init.__code__, "co_qualname") else init.__code__
    own = types.FunctionType(code, init.__globals__, "__init__", init.__defaults__, init.__closure__)
    own.__kwdefaults__, own.__doc__, own.__qualname__ = init.__kwdefaults__, init.__doc__, name
    cls.__init__ = own
