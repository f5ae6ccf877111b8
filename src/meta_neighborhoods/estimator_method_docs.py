"""The numpydoc text of the scikit-learn estimators' methods (fit, partial_fit, predict, score, save, load,
export_onnx), shared by both classes where they mean the same; the classes' own text, parameters and attributes:
``estimator_docs.py``."""

X_PARAMETER = """X : array-like of shape (n_samples, n_features)
        Rows to {what}: numbers (a data frame's columns must be numeric), dense or a scipy.sparse matrix (read in
        blocks of rows; ``predict`` never densifies it whole, ``fit`` holds its training rows dense in float32)."""

FIT = """Train the network{what} on ``X`` and ``y``, with early stopping on a held-out share of the rows.

    Inputs (and a regressor's targets) are standardised inside; the dictionary's keys start at random training
    rows (``key_init="samples"``, the default), and head, keys, values, step size and temperature are trained
    through the per-row adaptation. With ``vanilla_fallback`` the same network without neighbours is then
    trained on the same rows, and the one with the lower validation loss is kept.

    Parameters
    ----------
    """ + X_PARAMETER.format(what="train on") + """
    y : array-like of shape (n_samples,){shape}
        {target}
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative weights of the rows, not all zero. They weight the standardisation (means and scales of X,
        and of a regressor's y), the loss of every training batch (sum w_i l_i / sum w_i) and the validation loss
        of early stopping; a row of weight 0 is left out altogether (nor is it ever a key). Integer weights act
        as repeated rows with full-batch training (``batch_size`` >= n_samples), ``early_stopping=False``,
        ``key_init="gaussian"``, ``slot_dropout=0`` and a ``dictionary_size`` no larger than the rows of positive
        weight, up to float32 rounding; otherwise approximately (batches, validation split, slot dropout's draws
        and keys go by row, and the dictionary is capped at the rows, not their copies).

    Returns
    -------
    object
        The fitted estimator itself.

    See Also
    --------
    predict : What the fitted estimator answers.

    Examples
    --------
    See the class docstring.
    """

PARTIAL_FIT = """Train the network{what} for one epoch on ``X`` and ``y``, continuing it from the last call.

    scikit-learn's incremental learning, for rows that come in batches: a call is ``fit`` for one epoch without
    early stopping (``max_epochs=1``, ``early_stopping=False``, whatever the parameters say, which stay as they
    are). The first call (on an unfitted estimator) learns its rows' columns' scales{scales} and starts a dictionary
    of at most ``dictionary_size`` of its rows; each later call goes on from that network, on those scales and that
    dictionary. The vanilla fallback and the second phase (``refine_factor``) need validation rows and do not run.
    The calls train as one run: a call goes on from the weights the last one trained (of which ``model_`` holds the
    moving average: an edit of ``model_`` between calls is not seen), AdamW's moments, the average, the shuffle and
    the slot dropout's draws, so that ``n`` calls on the same rows train the weights that ``fit`` with
    ``max_epochs=n, early_stopping=False`` trains (it keeps them where its last epoch is its best); ``random_state``
    counts at the first call only. That state is about four times the network's parameters. A ``fit`` in between
    drops it (and a ``partial_fit`` after a ``fit`` goes on from the network kept, as ``warm_start`` does, with AdamW
    afresh); a pickle or deepcopy, and ``save`` and ``load``, keep it (on the GPU, slot dropout draws afresh after
    ``load``); ``clone`` does not. Give the first call representative rows, a few hundred at least: their
    scales stay, and so does a dictionary of fewer keys than ``dictionary_size`` (a UserWarning says so).
    ``loss_curve_``, ``n_iter_`` and ``best_epoch_`` count the epochs of every call (after a ``fit``, from the epoch
    it kept); ``best_loss_`` is the last epoch's training loss. Refused with ``leave_one_out``.

    Parameters
    ----------
    """ + X_PARAMETER.format(what="train on") + """
    y : array-like of shape (n_samples,){shape}
        {target}
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative weights of the rows, as ``fit`` takes them.{classes}

    Returns
    -------
    object
        The estimator itself.

    See Also
    --------
    fit : Train with early stopping, in one call.

    Examples
    --------
    >>> import numpy as np
    >>> from meta_neighborhoods import {cls}
    >>> X = np.random.default_rng(0).normal(size=(400, 3))
    >>> model = {cls}(hidden_layer_sizes=(16,), dictionary_size=64, random_state=0)
    >>> for rows in np.array_split(np.arange(400), 4):  # the first call's rows hold the 64 keys
    ...     model = model.partial_fit(X[rows], {call})
    >>> model.n_iter_, model.network_["dictionary_size"]
    (4, 64)
    """

REGRESSOR_PARTIAL_FIT = PARTIAL_FIT.format(what="", scales=" (and the targets')", shape=" or (n_samples, n_outputs)",
                                           target="Numeric targets.", classes="", cls="MetaNeighborhoodsRegressor",
                                           call="X[rows, 0]")
CLASSIFIER_PARTIAL_FIT = PARTIAL_FIT.format(
    what=" (a softmax over the classes)", scales="", shape="", target="Class labels, each one of ``classes``.",
    cls="MetaNeighborhoodsClassifier", call="X[rows, 0] > 0, classes=[False, True]",
    classes="""
    classes : array-like of shape (n_classes,), default=None
        Every class of all the calls, which a batch's y need not hold: required on the first call; later ones may
        give it again, the same.""")

PREDICT = """{summary}

    Each row attends to its nearest keys, the head takes ``inner_steps`` finetuning steps on them, and the
    finetuned head answers; rows go through the network in bounded batches.

    Parameters
    ----------
    """ + X_PARAMETER.format(what="predict") + """

    Returns
    -------
    {returns}

    See Also
    --------
    fit : Train the estimator first.

    Examples
    --------
    See the class docstring.
    """

REGRESSOR_PREDICT = PREDICT.format(summary="Predict with the head adapted to each row's neighbourhood.",
                                   returns="ndarray of shape (n_samples,) or (n_samples, n_outputs)\n"
                                           "        Predictions on the scale of the y fit saw.")
CLASSIFIER_PREDICT = PREDICT.format(summary="The most probable class of each row (see ``predict_proba``).",
                                    returns="ndarray of shape (n_samples,)\n        Labels from ``classes_``.")
PREDICT_PROBA = PREDICT.format(summary="Class probabilities of the head adapted to each row's neighbourhood.",
                               returns="ndarray of shape (n_samples, n_classes)\n"
                                       "        Probabilities of the classes in the order of ``classes_``.")
PREDICT_LOG_PROBA = PREDICT.format(summary="Return the logarithms of ``predict_proba``, without its rounding to 0.",
                                   returns="ndarray of shape (n_samples, n_classes)\n"
                                           "        Log-probabilities of the classes in the order of ``classes_``.")

SCORE = """{summary}

    As scikit-learn's own estimators score, so that model selection treats this one like any other.

    Parameters
    ----------
    """ + X_PARAMETER.format(what="score") + """
    y : array-like of shape (n_samples,){shape}
        True {target}.
    sample_weight : array-like of shape (n_samples,), default=None
        Weights of the rows.

    Returns
    -------
    float
        {returns}

    See Also
    --------
    predict : The predictions scored.

    Examples
    --------
    See the class docstring.
    """

REGRESSOR_SCORE = SCORE.format(summary="The coefficient of determination R^2 of ``predict(X)``.",
                               shape=" or (n_samples, n_outputs)", target="targets", returns="R^2 (1 is perfect).")
CLASSIFIER_SCORE = SCORE.format(summary="The accuracy of ``predict(X)``.", shape="", target="labels",
                                returns="Share of rows predicted right.")

SAVE = """Save the fitted estimator as a checkpoint: ``path.json`` and ``path.<token>.safetensors``.

    Written atomically (see ``checkpoint.py``); JSON and tensors only, so that, unlike a pickle, loading it
    cannot run code. An earlier checkpoint at ``path`` is replaced, as ``torch.save`` and ``joblib.dump`` replace
    a file; what is not a regular file (a folder, a device) is refused, and so are parameters set since fit
    (``set_params``) from which ``load``, which rebuilds the network from them, would build another one. After
    ``partial_fit``, the checkpoint also holds the training state its next call goes on from.

    Parameters
    ----------
    path : str or path-like
        Stem of the two files (a ``.json`` suffix is taken off); their folder is created if needed.

    Returns
    -------
    Path
        The JSON file written.

    See Also
    --------
    load : Read it back.

    Examples
    --------
    >>> model.save("model")  # doctest: +SKIP
    """

LOAD = """Read an estimator saved by ``save``, on the CPU and ready to predict.

    Every field of the file is checked before anything is built; nothing is unpickled.

    Parameters
    ----------
    path : str or path-like
        Stem of the checkpoint, or its ``.json`` file; a folder: its ``model.json``, as ``meta-neighborhoods fit``
        writes it.

    Returns
    -------
    estimator
        The fitted estimator, predicting as the saved one did.

    Raises
    ------
    FileNotFoundError
        No checkpoint at ``path``, or a folder without ``model.json``.
    CheckpointError
        Names whatever else is wrong: a damaged or foreign file, a missing tensor file, another estimator class, a
        network that differs from the one the file describes, or a parameter the file lacks (one of an earlier
        version, fitted with settings this version cannot know).

    See Also
    --------
    save : Write one.

    Examples
    --------
    >>> same = MetaNeighborhoodsRegressor.load("model")  # doctest: +SKIP
    """

EXPORT_ONNX = """Write the fitted predictor as one ONNX graph, to run without PyTorch (see ``export.py``).

    Input ``"input"``: raw float32 rows (n, n_features_in_) (float64 ones where ``model_`` was made float64);
    output ``"output"``: ``predict`` (regressor) or ``predict_proba`` (classifier), up to float32 rounding.
    Standardisation, attention over the dictionary, the inner steps and the head are all in the graph; its
    ``metadata_props`` name the estimator, ``selected_``, the version, the ``classes`` (JSON: the output columns)
    and the ``feature_names`` fit saw (JSON), where it saw any.

    Parameters
    ----------
    path : str or path-like
        The ``.onnx`` file to write; an earlier one there is replaced (what is not a regular file is refused).

    Returns
    -------
    Path
        The file written.

    See Also
    --------
    save : The exact, PyTorch format.

    Examples
    --------
    >>> model.export_onnx("model.onnx")  # doctest: +SKIP
    """


def doc(text: str):
    """Give the decorated method ``text`` as its docstring."""

    def apply(method):
        method.__doc__ = text
        return method

    return apply
