"""Settings in frozen, validated objects: the method's (``MNConfig``) and those of the runs built on it.

Every front end (the scikit-learn estimators, ``classify``, ``spiral``, the ablations) builds an ``MNConfig``
and hands it to ``MetaNeighborhoods``, whose ``__post_init__`` checks every method setting before anything is
built. The method's defaults are ``MNConfig``'s; the estimators' are ``EstimatorDefaults``, all of them, chosen
for tables.
``SpiralConfig`` and ``ClassificationConfig`` hold the arguments of a spiral or classify run, with the command
line's defaults. This module imports no torch, so ``--help`` stays fast.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace

from .presets import PRESETS
from .validation import (ConfigError, check_flag, check_float32_positive, check_int, check_non_negative, check_option,
                         check_positive, check_seed, check_threads, is_int, is_real, shown)

TASKS = REGRESSION, CLASSIFICATION = ("regression", "classification")
SIMILARITIES = ("cosine", "euclidean")
STEP_SIZES = ("scalar", "layer", "diagonal")
ADAPT = ("all", "last")
VALUE_KINDS = ("learned", "fixed")
KEY_KINDS = ("learned", "fixed")  # trained with the network, or left where they start
HEADS = ("mlp", "periodic")  # the heads the package ships, by name (``factories.NAMED_HEADS`` builds them)
PERIODIC_FREQUENCIES, PERIODIC_EMBEDDING = 16, 8  # heads.PeriodicEmbedding's, per feature (its weights bounded too)
SLOT_DRAWS = ("row", "batch")  # slot dropout drawn for each example, or once for the whole batch
KEY_INITS = ("samples", "gaussian")  # keys at training examples (``InducedDictionary.init_from_samples``), or random
IMPLEMENTATIONS = ("auto", "fast", "generic", "loop")
DEVICES = ("auto", "cpu", "cuda")  # where to train: "auto" = CUDA if available
MAX_INNER_STEPS = 100  # the paper takes one; a few more never helped (docs/results/defaults.md)
MAX_IMAGE_SIZE = 4096  # pixels a side: ImageNet's largest are about this size
MAX_EPOCHS = 10**9  # past any run (the paper's budget on one image: 2e7); 10**400 overflowed the schedule's floats
HIGH_DIMENSIONAL = 32  # key features above which the regressors' "auto" similarity is cosine
FOLDS, SEEDS = 5, 3  # regress, ablate: k-fold CV, repeated (one seed hid a 4.5 % gain on gom that three seeds show)
ABLATION_TYPES = {  # ablate --param: the settings it varies, and the type of their --values
    "dictionary_size": int, "temperature": float, "top_k": int, "inner_steps": int,
    "step_size": str, "similarity": str, "adapt": str, "slot_dropout": float,
}
MAX_VALUES = 100  # of one ablation: a record's list may be any length, and each value is folds x seeds fits
MAX_WEIGHTS = 2**30  # of the MLP a fit builds: 4 GB of float32, three times that with the optimiser's moments
# classify's protocol: the dictionary by default, the validation split held out of the training set, the clip
NEIGHBOURS_PER_CLASS = 10
VALIDATION_FRACTION, VALIDATION_MAX = 0.1, 5000
GRAD_CLIP = 10.0
# analyze: how much it draws by default (what it draws: run_files.ANALYSES)
TSNE_SAMPLES = 2000  # training images in the t-SNE picture
RETRIEVED = 5  # nearest test images per key (Appendix A.8)
KEYS_PER_CLASS, MAX_KEYS = 2, 20  # rows of the retrieval grid
# regress's methods by name, as its --help names them: here, without torch, so that --help stays fast (their
# factories: experiments/cross_validation.py); the optional ones run where their package is installed ('.[baselines]')
TABLE_METHOD_NAMES = {"knn": "kNN (k by inner CV)", "vanilla": "the vanilla MLP",
                      "meta_neighborhoods": "Meta-Neighborhoods (estimator defaults)",
                      "hist_gradient_boosting": "HistGradientBoosting"}
OPTIONAL_METHOD_NAMES = {"lightgbm": "LightGBM", "realmlp_td": "pytabkit's RealMLP-TD"}
PATH_FIELDS = ("data_dir", "cache_dir")  # classify's data folders: recorded, never read back from a run folder
AUGMENTATIONS = ("dataset", "paper")  # classify: the data set's own (``ImageSpec.augment``) or the authors' pipeline


def auto_similarity(task: str, key_features: int) -> str:
    """The estimators' ``similarity="auto"``: for regression, Euclidean for few features and cosine beyond
    HIGH_DIMENSIONAL (gom: 0.90 against vanilla with cosine, 1.07 with Euclidean); for classification Euclidean
    always (digits: cosine lost to vanilla, Euclidean did not). See docs/results/defaults.md. Key features: the
    rows', or an extractor's."""
    return "cosine" if task == "regression" and key_features > HIGH_DIMENSIONAL else "euclidean"


def default_temperature(similarity: str, key_features: int) -> float:
    """The estimators' ``temperature=None``: squared distances between standardised rows grow like 2 d; cosines
    stay in [-1, 1]."""
    check_option("similarity", similarity, SIMILARITIES)
    return {"euclidean": float(key_features), "cosine": 0.1}[similarity]


# MNConfig's settings of how a model trains, not of what a trained one computes (a saved model needs no other)
TRAINING_ONLY = ("first_order", "key_init", "key_std", "key_lr_scale", "slot_draw")


@dataclass(frozen=True)
class MNConfig:
    """What defines a Meta-Neighborhoods model besides its head and extractor.

    ``dictionary_size`` S = 0 is the vanilla baseline (no neighbours, no adaptation). Attention is
    ``softmax(similarity / temperature)``, the temperature fixed or learned, the similarity taken with a learned
    weight per key feature if ``learn_metric``. The inner loop takes ``inner_steps``
    steps of a learned ``step_size`` ("scalar", one per adapted "layer" tensor, or "diagonal", starting at
    ``step_size_init``) on the head's parameters (``adapt``: the "last" layer, a local linear correction on the
    hidden features, or "all"), second order unless ``first_order``. Dictionary values are "learned" or "fixed"
    (random labels, or the targets of the rows the keys start at); ``keys`` are "learned" or "fixed" where they
    start. Keys start at training examples (``key_init="samples"``: done by the front end, which has the data, with
    ``dictionary.init_from_samples``; a loop of your own calls it) or at N(0, ``key_std``^2). ``slot_dropout``
    hides that share of the slots from each training example, drawn for each example (``slot_draw="row"``) or once
    for the whole batch ("batch": each example's view has about the same law, and the hidden slots cost nothing).
    ``top_k`` = K lets each example attend only to its K most similar keys (softmax over those; None or K >= S: all
    of them), so the inner loop's work grows with K, not S. ``implementation`` picks the inner loop: a head's fast
    path (``fast``; ``auto`` where the head has one), the ``torch.func`` oracle (``generic``), or the oracle one
    input at a time (``loop``).
    """

    task: str = "regression"
    dictionary_size: int = 100
    similarity: str = "euclidean"
    temperature: float = 1.0
    learn_temperature: bool = False
    learn_metric: bool = False
    inner_steps: int = 1
    step_size: str = "scalar"
    step_size_init: float = 0.05
    adapt: str = "last"
    first_order: bool = False
    values: str = "learned"
    keys: str = "learned"
    key_init: str = "gaussian"
    key_std: float = 1.0
    key_lr_scale: float = 1.0  # the keys' learning rate as a multiple of the network's (their own AdamW group)
    slot_dropout: float = 0.0
    slot_draw: str = "row"
    top_k: int | None = None
    implementation: str = "auto"

    def __post_init__(self) -> None:
        """Check every field, naming it and what it allows; numbers become plain ``int`` / ``float`` (JSON-able)."""
        for name, allowed in (("task", TASKS), ("similarity", SIMILARITIES), ("step size", STEP_SIZES),
                              ("adapt", ADAPT), ("values", VALUE_KINDS), ("keys", KEY_KINDS), ("key_init", KEY_INITS),
                              ("slot_draw", SLOT_DRAWS), ("implementation", IMPLEMENTATIONS)):
            check_option(name, getattr(self, name.replace(" ", "_")), allowed)
        numbers = {"dictionary_size": check_int("dictionary_size", self.dictionary_size, minimum=0),
                   # each step is a pass over the head: a saved 10**9 hung predict
                   "inner_steps": check_int("inner_steps", self.inner_steps, maximum=MAX_INNER_STEPS),
                   "temperature": check_float32_positive("temperature", self.temperature),
                   "step_size_init": check_positive("step_size_init", self.step_size_init),
                   "key_std": check_positive("key_std", self.key_std),
                   "key_lr_scale": check_positive("key_lr_scale", self.key_lr_scale)}
        if self.top_k is not None:
            if not (is_int(self.top_k) and self.top_k >= 1):
                raise ConfigError(f"top_k must be a positive integer (or None for full attention), got "
                                  f"{shown(self.top_k)}", "top_k")
            numbers["top_k"] = check_int("top_k", self.top_k)  # and no larger than a count can be
        if not (is_real(self.slot_dropout) and 0.0 <= self.slot_dropout < 1.0):
            raise ConfigError(f"slot_dropout must be in [0, 1), got {shown(self.slot_dropout)}", "slot_dropout")
        for flag in ("learn_temperature", "learn_metric", "first_order"):
            numbers[flag] = check_flag(flag, getattr(self, flag))
        for name, value in {**numbers, "slot_dropout": float(self.slot_dropout)}.items():
            object.__setattr__(self, name, value)  # frozen: normalise in place, once

    @property
    def vanilla(self) -> bool:
        return self.dictionary_size == 0

    def neighbourhood_size(self, training: bool) -> int | None:
        """How many keys an example attends to: K while training, or None for all of them (K >= S).

        A training example sees (1 - slot_dropout) of the slots, so its K nearest visible keys reach as far as
        its K / (1 - slot_dropout) nearest keys of the whole dictionary. At evaluation every slot is visible and
        that many keys are attended to: the same neighbourhood as in training (at top-32 with all layers adapted, 64
        keys instead of 32 lowered MN / vanilla's geometric mean over 11 tables from 1.041 to 1.002; defaults.md).
        """
        if self.top_k is None:
            return None
        k = self.top_k if training else round(self.top_k / (1.0 - self.slot_dropout))
        return k if k < self.dictionary_size else None

    def replace(self, **changes) -> MNConfig:
        """A copy with ``changes`` (validated again); an unknown name is refused, listing the fields."""
        unknown = sorted(set(changes) - FIELDS)
        if unknown:
            raise ConfigError(f"unknown MNConfig field(s) {', '.join(unknown)}; fields: {', '.join(sorted(FIELDS))}")
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)


FIELDS = frozenset(f.name for f in fields(MNConfig))


@dataclass(frozen=True)
class EstimatorDefaults:
    """The estimators' defaults, one home for their signature and the commands' --help. Chosen by one rule over
    eleven tables (``docs/results/defaults.md``), so they differ from the method's (``MNConfig``) where tables
    wanted otherwise (the similarity by the features, a learned temperature, a step per layer, keys at the
    training rows); where the method's default serves, it is taken from there."""

    hidden_layer_sizes: tuple = (128, 128)
    dictionary_size: int = 4096
    top_k: int = 128
    similarity: str = "auto"  # auto_similarity
    temperature: float | None = None  # default_temperature
    learn_temperature: bool = True
    learn_metric: bool = MNConfig.learn_metric
    slot_dropout: float = 0.5
    slot_draw: str = MNConfig.slot_draw
    inner_steps: int = MNConfig.inner_steps
    step_size: str = "layer"
    step_size_init: float = MNConfig.step_size_init
    adapt: str = MNConfig.adapt
    key_init: str = "samples"
    learn_dictionary: bool = True
    key_lr_scale: float = MNConfig.key_lr_scale
    leave_one_out: bool = False
    vanilla_fallback: bool = True
    max_epochs: int = 3000
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    gradient_clip: float = 1.0
    ema_decay: float = 0.99
    refine_factor: float | None = None  # a second phase at this factor of the learning rate: naval alone gained
    tol: float = 1e-6  # a validation loss must improve by more than this to count as better
    early_stopping: bool = True
    validation_fraction: float = 0.1
    n_iter_no_change: int = 200


ESTIMATOR = EstimatorDefaults()

# Sec. 4.1: 100 neighbours with fixed labels, the negative (squared) Euclidean distance at T = 0.1; a large first step.
SPIRAL_METHOD = MNConfig(task="classification", temperature=0.1, values="fixed", step_size_init=0.5)


@dataclass(frozen=True)
class SpiralConfig:
    """The two-spiral toy: training budget, data and what is recorded for the figure and the animation."""

    seed: int = 0
    epochs: int = 300
    batch_size: int = 256
    learning_rate: float = 0.01
    method: MNConfig = SPIRAL_METHOD
    n_per_class: int = 800
    noise: float = 0.5
    snapshots: int = 30  # moments recorded for the figure and the animation
    animation: bool = True
    threads: int | None = None  # torch's CPU threads, which results depend on (a run records the count it ran on)

    def __post_init__(self) -> None:
        for name in ("batch_size", "n_per_class", "snapshots"):
            check_int(name, getattr(self, name))
        check_threads("threads", self.threads)
        check_int("epochs", self.epochs, maximum=MAX_EPOCHS)  # not the schedule's overflow
        check_positive("learning_rate", self.learning_rate)
        check_seed("seed", self.seed)


@dataclass(frozen=True)
class ClassificationConfig:
    """The arguments of a classify run: with them, a run can be repeated exactly. Names of data sets,
    backbones and methods are checked by the experiment, which has the registries."""

    dataset: str
    backbone: str
    method: str
    epochs: int = 100
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 7.5e-5
    train_subset: int | None = None
    dictionary_size: int | None = None  # None: NEIGHBOURS_PER_CLASS per class
    key_init: str = "gaussian"  # the authors' N(0, 0.05^2); or "samples": features of training images
    psi: int = 5  # MAXL's auxiliary classes per class (maxl runs only), as MAXL's code (psi = [5] * 20)
    lr_drop_at: float = 2 / 3  # share of the epochs after which the learning rate drops tenfold
    augment: str = "dataset"  # the data set's own augmentation, or "paper": the authors' full pipeline
    image_size: int | None = None  # every image resized to this square size (the data sets that take image_size)
    preset: str | None = None  # what set the defaults above (``presets.py``), recorded with the run
    seed: int = 0
    device: str = "auto"
    threads: int | None = None  # torch's CPU threads, which results depend on (a run records the count it ran on)
    data_dir: str | None = None
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        for name in PATH_FIELDS:  # recorded as text
            path = getattr(self, name)
            if path is not None:
                if not isinstance(path, (str, os.PathLike)):
                    raise ConfigError(f"{name} must be a folder's path, got {path!r}", name)
                object.__setattr__(self, name, str(path))
        check_int("epochs", self.epochs, maximum=MAX_EPOCHS)  # not the schedule's overflow
        check_int("batch_size", self.batch_size)
        if self.dictionary_size is not None:  # train_subset is checked against the data by ImageBatches
            check_int("dictionary size", self.dictionary_size)
        check_positive("learning_rate", self.learning_rate)
        check_non_negative("weight_decay", self.weight_decay)
        check_option("key initialisation", self.key_init, KEY_INITS)
        check_int("psi (--psi, MAXL's auxiliary classes per class)", self.psi, minimum=2)
        if not (is_real(self.lr_drop_at) and 0 < self.lr_drop_at <= 1):
            raise ConfigError(f"lr_drop_at must be in (0, 1], got {shown(self.lr_drop_at)}", "lr_drop_at")
        check_option("augment", self.augment, AUGMENTATIONS)
        if self.image_size is not None:
            check_int("image_size", self.image_size, maximum=MAX_IMAGE_SIZE)
        if self.preset is not None:
            check_option("--preset", self.preset, PRESETS)
        check_option("device", self.device, DEVICES)
        check_threads("threads", self.threads)
        check_seed("seed", self.seed)

    @property
    def image_options(self) -> dict:
        """What ``load_image_dataset`` takes of this run's settings."""
        return {} if self.image_size is None else {"image_size": self.image_size}


RUN_DEFAULTS = {field.name: field.default for field in fields(ClassificationConfig)}  # MISSING: none (the names)
ADDED_SINCE = ("threads", "image_size")  # fields a run folder written before they existed lacks: it ran at their default
