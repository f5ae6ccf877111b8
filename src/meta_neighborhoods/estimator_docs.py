"""The numpydoc text of the scikit-learn estimators, in one place: both classes share their parameters, and
scikit-learn's HTML representation shows each parameter's entry from the class docstring."""

PARAMETERS = """
    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(128, 128)
        Widths of the MLP head's hidden layers (an int: one layer). The vanilla baseline (``dictionary_size=0``) is
        the same network. At most 2**30 weights in all (4 GB of float32), refused before they are allocated.
        Unused with a ``head`` of one's own.
    dictionary_size : int, default=4096
        S, the number of induced neighbours, capped at the number of training rows (keys start at training rows,
        values at their targets), so that on tables of up to about 4,000 rows every training row is a key. 0 trains
        the vanilla MLP, without neighbours.
    top_k : int or None, default=128
        K: each row attends only to its K most similar keys, a softmax over those K. The inner loop's work then
        grows with K rather than S, which makes dictionaries as large as the training set affordable. K counts
        the keys a training row sees; at prediction, with no slot hidden, the same neighbourhood holds
        K / (1 - slot_dropout) keys, and that many are attended to (256 at the defaults). None (or a K of at least
        S) attends to every key. With last-layer adaptation 128 was lower than 32 on six of eleven tables and
        in geometric mean (``docs/results/defaults.md``); 32 costs less on tables of many thousand rows.
    similarity : {"auto", "euclidean", "cosine"}, default="auto"
        How rows and keys are compared: negative squared Euclidean distance or cosine. "auto" takes cosine above
        32 features (where the keys live: the rows', or the extractor's) and Euclidean below (regressor),
        Euclidean always (classifier).
    temperature : float or None, default=None
        Softmax temperature T of the attention. None: T = d (the number of those features) for Euclidean
        similarity, 0.1 for cosine.
    learn_temperature : bool, default=True
        Whether training adjusts the temperature (stored as log T, so it stays positive).
    learn_metric : bool, default=False
        Whether the similarity weighs each feature (where the keys live) by a learned factor, starting at 1: an
        ARD metric, so that neighbours can come to be judged by the features that matter.
    slot_dropout : float, default=0.5
        Share of the dictionary hidden from each training row at random (none at prediction); the authors use 0.5
        on images, and it helps large dictionaries on tables. With full attention each row sees exactly that
        share, as in the authors' code; with ``top_k`` each slot is hidden with that probability, drawn for the
        row's nearest keys only (cheaper than a draw for every slot), and prediction attends to
        top_k / (1 - slot_dropout) keys.
    slot_draw : {"row", "batch"}, default="row"
        Whether slot dropout is drawn for each training row or once for the whole batch. Each row's view has about
        the same law either way (a batch's rows then hide the same slots), and "batch" leaves the hidden slots out
        of the work: an epoch took 0.5 to 0.6x the time. A choice for large tables where fit time matters; not the
        default, because the correlated draw left naval's error 67 % higher (``docs/results/defaults.md``).
    inner_steps : int, default=1
        Gradient steps of the per-row finetuning (1 to 100).
    step_size : {"scalar", "layer", "diagonal"}, default="layer"
        The learned inner step size: one number, one per adapted weight matrix and bias vector, or one per
        adapted weight. One per tensor lets the last layer's bias, a shift shared by the neighbourhood, move at
        its own pace rather than at the weights' (whose step is scaled by the hidden features' products).
    step_size_init : float, default=0.05
        Where the learned step size starts.
    adapt : {"all", "last"}, default="last"
        Which layers of the head the inner loop finetunes. Finetuning the last layer alone is a local linear
        correction on the hidden features; over eleven tables it lowered MN / vanilla's geometric mean from 1.002
        (all layers, top-32) to 0.874 (top-128), with a quarter of vanilla's error on the nearly noise-free naval.
    key_init : {"samples", "gaussian"}, default="samples"
        Keys at random training rows and values at their targets, or keys drawn from N(0, 1).
    learn_dictionary : bool, default=True
        Whether training moves the keys and values. False keeps them at the training rows and their targets (needs
        ``key_init="samples"``): the neighbours are then the training set itself, as for kNN, and only the
        network, attention and step size learn how to use them.
    key_lr_scale : float, default=1.0
        The keys' learning rate as a multiple of ``learning_rate`` (the values and the network keep theirs).
        Slower keys stay nearer the training rows they start at; a tenth was screened over the eleven tables of
        ``docs/results/defaults.md``.
    leave_one_out : bool, default=False
        With ``key_init="samples"`` (refused with another), hide from each training row the key that started at
        it (holding its own target) while training, as a test row never finds itself among the keys. No effect
        on prediction. Over eleven tables a tie with the default (better on the noisiest, worse where neighbours
        carry the signal; ``docs/results/defaults.md``): worth trying on noisy targets.
    vanilla_fallback : bool, default=True
        Also train the same network without neighbours (``dictionary_size=0``) on the same training rows, with the
        same seed, and keep it when its validation loss is lower (``selected_`` says which was kept). Over eleven
        tables x 3 seeds this cut the largest loss to the vanilla network from 6.3 % to 2.8 % and lowered the
        geometric mean of MN / vanilla from 0.898 to 0.893 (``docs/results/defaults.md``); fit takes about 1.1 to
        1.2 times as long. Needs validation rows (``early_stopping``); False always keeps the network with
        neighbours, as the paper does.
    max_epochs : int, default=3000
        Upper bound on the training epochs (10**9 at most); a fit ended here, not by early stopping, warns
        (``ConvergenceWarning``). Early stopping ends most fits long before; 1,000 cut short vanilla's fits on
        naval, a noise-free table (20 % higher error; ``docs/results/defaults.md``).
    batch_size : int, default=128
        Rows per training step.
    learning_rate : float, default=1e-3
        AdamW's learning rate.
    weight_decay : float, default=1e-4
        AdamW's weight decay, on weight matrices only (never on the dictionary, temperature or step size).
    gradient_clip : float or None, default=1.0
        Clip every gradient entry to +-this (None: no clipping); keeps the second-order meta-gradient from
        throwing a run off course.
    ema_decay : float or None, default=0.99
        Keep an exponential moving average of the weights, updated after every step with this decay (0.99: about
        the last 100 steps), and validate, keep and predict with it. None: the weights of the last step. Over 11
        tables it lowered both the vanilla network's and Meta-Neighborhoods' errors by about 3 % (defaults.md).
    refine_factor : float or None, default=None
        A second phase of training: when early stopping ends the first, the network kept (the vanilla fallback's
        choice) trains on from the weights it kept at ``refine_factor`` times ``learning_rate`` (0.1, say), on the
        same rows and validation rows, until early stopping ends this phase too; the weights it starts from count as
        its epoch 0, kept unless an epoch beats them. It is what a warm start at that rate does (``warm_start``): at
        least ``n_iter_no_change`` and at most ``max_epochs`` more epochs. ``n_iter_``, ``best_epoch_`` and the loss
        curves then count both phases; ``validation_losses_`` stays the first phase's, which chose. Without
        validation rows (``early_stopping=False``, or too few rows) there is no second phase, as there is no
        fallback. Over 11 tables (3 seeds, factor 0.1) it lowered naval's error by about 20 % for both networks,
        yacht's by up to 2 %, and moved no other table's by more than 0.6 %; it is not the default
        (``docs/results/defaults.md``).
    tol : float, default=1e-6
        An epoch counts as better when its loss is lower than the best by more than ``tol``.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the training rows and stop when their loss has not improved for
        ``n_iter_no_change`` epochs, keeping the best weights. Without it, the training loss decides, as it does
        (with a warning) where too few rows leave two on each side; the vanilla fallback then does not run.
    validation_fraction : float, default=0.1
        Share of the training rows held out for early stopping (the classifier's stratified by class).
    n_iter_no_change : int, default=200
        Epochs without improvement before training stops. Chosen on tables of about 1,000 rows, where both networks
        improve after long plateaus on nearly noise-free ones (naval, energy, yacht: 200 beat 60, and 60 beat 20).
        On larger tables an epoch is many steps and takes long (protein's 45,730 rows: 10.7 s, 44x vanilla's): a
        smaller patience helps.
    warm_start : bool, default=False
        True: a fit of a fitted estimator continues its network, as ``MLPRegressor``'s does, rather than starting
        again. It keeps what the network is: weights, dictionary (the keys and values where training moved them),
        temperature and step sizes, and the columns' scales it learnt on (``x_mean_``, ``x_scale_``, and the
        regressor's ``y_mean_``, ``y_scale_``: new ones would move every input under it); AdamW's moments and the
        moving average of the weights (``ema_decay``) start again. It continues the network the vanilla fallback
        kept (``selected_``), alone: a rival trained from scratch would not compete on equal terms. Early stopping
        measures the network it starts from on this fit's validation rows, as epoch 0, and keeps it unless an epoch
        beats it (without validation rows, this fit's best epoch is kept); ``n_iter_``, ``best_epoch_`` and the
        loss curves describe this fit. X must have the fitted columns, y the fitted outputs or classes, and the
        method's settings and ``hidden_layer_sizes`` be those of the fit (a ValueError otherwise; training settings
        such as ``learning_rate`` or ``max_epochs`` may change; classes are compared by type and value, so labels
        [False, True] do not continue a network of [0, 1]). ``dictionary_size`` below the fitted dictionary
        (``network_["dictionary_size"]``) is refused; one above it continues the fitted dictionary as it is, since
        fit caps the dictionary at its training rows and a fitted estimator does not record the value it was given.
        A warm fit is refused with ``leave_one_out``, which needs to know which training row each key started at; a
        first fit, cold, takes it.
    random_state : int, RandomState instance or None, default=None
        Seed of the validation split, the initialisation, the slot dropout and the batches. The caller's global
        torch generator is left untouched.
    device : str, default="cpu"
        "auto" (CUDA when available) or any torch device string ("cpu", "cuda", "cuda:1", "mps").
    verbose : int, default=0
        1: a progress bar over each network's epochs (on a terminal), then a line with its epochs and best loss
        (on stdout); 2 and above: instead of the bar, a line each epoch with its training and validation losses.
    head : callable, {"mlp", "periodic"} or None, default=None
        A head the package ships, by name (a setting: ``save`` keeps it): "mlp", the MLP of ``hidden_layer_sizes``
        (as None), or "periodic", ``heads.PeriodicMLPHead`` of those widths (periodic embeddings of the features).
        One's own head: ``head(n_features, n_outputs)`` returns the ``torch.nn.Module`` finetuned for each row,
        meeting the head contract of ``heads/base.py`` (``in_features`` and ``out_features`` as asked; with an
        extractor, ``n_features`` is its output width). None: the MLP of ``hidden_layer_sizes``. Heads with a
        fast inner loop keep it (``MLPHead``, ``CosineHead``, ``PeriodicMLPHead``, and any head that declares its
        last layer with ``heads.last_layer_path``, whose body's dropout draws once for the keys); others run the
        generic ``torch.func`` one, which is slower and does not export to ONNX; dropout in it draws anew for each
        row, batch normalisation is refused (the head runs on one row at a time). A factory's own settings go in with it
        (``functools.partial(MyHead, width=64)``). ``save`` refuses a model built by a factory (pickle it).
    extractor : callable or None, default=None
        One's own feature extractor, trained with the rest: ``extractor(n_features)`` returns a
        ``torch.nn.Module`` mapping rows (n, n_features) to features (n, m). The keys live among its features,
        and ``key_init="samples"`` starts them at the features of training rows. None: the standardised rows.
"""

ATTRIBUTES = """
    Attributes
    ----------
    model_ : MetaNeighborhoods
        The trained network (a ``torch.nn.Module``).
    network_ : dict
        What the network was built from: features, outputs, dictionary size, similarity and temperature used.
    x_mean_ : ndarray of shape (n_features_in_,)
        Mean of each feature on the training rows (inputs are standardised inside).
    x_scale_ : ndarray of shape (n_features_in_,)
        Scale of each feature on the training rows.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features seen during fit, when X had string column names.
    n_iter_ : int
        Epochs run.
    loss_curve_ : list of float
        Training loss of every epoch.
    validation_loss_curve_ : list of float or None
        Validation loss of every epoch (None without early stopping).
    best_loss_ : float
        The best validation (or training) loss; its weights are the ones kept.
    best_epoch_ : int
        The epoch of ``best_loss_``.
    selected_ : {{"meta_neighborhoods", "vanilla"}}
        The network kept: the one with neighbours, or the one without (``vanilla_fallback``, or a dictionary of
        size 0). ``n_iter_``, the curves, ``best_loss_`` and ``best_epoch_`` are the kept network's.
    validation_losses_ : dict
        The best validation loss of each network trained, by the names of ``selected_`` (empty without early
        stopping): how much the kept network won by.{extra}
"""

SEE_ALSO = """
    See Also
    --------
    sklearn.neural_network.{mlp} : An MLP without neighbours.
    meta_neighborhoods.model.MetaNeighborhoods : The PyTorch module underneath, for one's own training loop.
"""

REGRESSOR = ("""Meta-Neighborhoods regression on tables (Sec. 4.3): an MLP finetuned per row on learned neighbours.

    Inputs and targets are standardised inside; predictions come back on the original scale.
""" + PARAMETERS + ATTRIBUTES.format(extra="""
    y_mean_ : ndarray of shape (n_outputs,)
        Mean of each target on the training rows.
    y_scale_ : ndarray of shape (n_outputs,)
        Scale of each target on the training rows.""") + SEE_ALSO.format(mlp="MLPRegressor") + """
    Examples
    --------
    >>> import numpy as np
    >>> from meta_neighborhoods import MetaNeighborhoodsRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4))
    >>> y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2 + 0.5 * rng.normal(size=200)
    >>> model = MetaNeighborhoodsRegressor(n_iter_no_change=10, random_state=0).fit(X, y)
    >>> model.predict(X[:3]).shape
    (3,)
""")

CLASSIFIER = ("""Meta-Neighborhoods classification on tables: dictionary values are learned class distributions.

    The head is finetuned per row on the cross-entropy of its neighbours' class distributions.
""" + PARAMETERS + ATTRIBUTES.format(extra="""
    classes_ : ndarray of shape (n_classes,)
        The class labels.""") + SEE_ALSO.format(mlp="MLPClassifier") + """
    Examples
    --------
    >>> import numpy as np
    >>> from meta_neighborhoods import MetaNeighborhoodsClassifier
    >>> X = np.random.default_rng(0).normal(size=(200, 4))
    >>> y = (X[:, 0] * X[:, 1] > 0).astype(int)
    >>> model = MetaNeighborhoodsClassifier(n_iter_no_change=10, random_state=0).fit(X, y)
    >>> model.predict_proba(X[:3]).shape
    (3, 2)
"""
)
