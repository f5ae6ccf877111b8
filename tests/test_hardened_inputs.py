"""Bad inputs fail early and say what is wrong; nothing already on disk or in the caller's arrays changes.

``BAD_INPUTS`` is one table: each case builds its inputs in ``tmp_path`` and returns ``(function, *args)``.
The test checks the exception type and message, that the raising frame is ours or scikit-learn's input
validation (never deep inside torch), and that the arguments and every file under ``tmp_path`` are unchanged.
Hypothesis then feeds the estimators random finite tables, which must always give sane predictions.
"""

import copy
import functools
import gzip
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import sklearn.utils.multiclass
import sklearn.utils.validation
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.linear_model import LogisticRegression

import meta_neighborhoods
from meta_neighborhoods.backbones import create_backbone
from meta_neighborhoods.cli import main
from meta_neighborhoods.datasets.files import DataFileError
from meta_neighborhoods.datasets.image_formats import read_idx
from meta_neighborhoods.datasets.images import load_image_dataset
from meta_neighborhoods.datasets.csv_tables import load_csv_table
from meta_neighborhoods.datasets.tables import GOM_FILE, _GOM_PACKAGED, load_table
from meta_neighborhoods.estimators import MetaNeighborhoodsClassifier, MetaNeighborhoodsRegressor
from meta_neighborhoods.experiments.classification import run_classification
from meta_neighborhoods.experiments.table_runs import run_tables
from meta_neighborhoods.heads import MLPHead
from meta_neighborhoods.estimator_rows import early_stopping_split, standardiser
from meta_neighborhoods.model import MetaNeighborhoods
from meta_neighborhoods.io import prepare_out_dir
from meta_neighborhoods.similarity import Attention

TINY = dict(hidden_layer_sizes=(8,), dictionary_size=4, max_epochs=3, batch_size=16, random_state=0)
RNG = np.random.default_rng(0)
X = RNG.normal(size=(30, 3))
Y = X[:, 0] + 0.1 * RNG.normal(size=30)
LABELS = (Y > 0).astype(np.int64)
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

# Where a clear error may come from: our code, or scikit-learn's own checks of X and y.
OUR_CODE = Path(meta_neighborhoods.__file__).parent
SKLEARN_CHECKS = {Path(sklearn.utils.validation.__file__), Path(sklearn.utils.multiclass.__file__)}


def _with(array, index, value):
    """A copy of ``array`` with one entry replaced: the bad input, never the shared one."""
    bad = array.astype(float)
    bad[index] = value
    return bad


def _regressor_fit(X_, y_, **params):
    return lambda tmp: (MetaNeighborhoodsRegressor(**{**TINY, **params}).fit, X_, y_)


def _classifier_fit(X_, y_, **params):
    return lambda tmp: (MetaNeighborhoodsClassifier(**{**TINY, **params}).fit, X_, y_)


def _bad_parameter(**params):
    return _regressor_fit(X, Y, **params)


@functools.cache
def _fitted_regressor():
    return MetaNeighborhoodsRegressor(**TINY).fit(X, Y)


def _predict(X_):
    return lambda tmp: (_fitted_regressor().predict, X_)


def _module(**options):
    """A small model with a dictionary, so that attention and adaptation are built too."""
    return lambda tmp: (functools.partial(MetaNeighborhoods, MLPHead(2, (4,), 1), dictionary_size=4, **options),)


def _idx(magic: int, shape: tuple[int, ...]) -> bytes:
    """A valid IDX file of zeros: magic, big-endian sizes, then one byte per entry."""
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in shape)
    return header + bytes(int(np.prod(shape)))


IDX_IMAGES, IDX_LABELS = _idx(2051, (3, 2, 2)), _idx(2049, (3,))


def _write(path: Path, content: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _folder(path):
    path.mkdir()
    return path


def _csv(content: bytes | str):
    return lambda tmp: (load_csv_table, _write(tmp / "table.csv", content), "y")


def _gom_with_one_byte_changed(tmp):
    data = bytearray(_GOM_PACKAGED.read_bytes())
    data[100] ^= 1
    _write(tmp / "gom" / GOM_FILE, bytes(data))
    return load_table, "gom", tmp


def _mnist_with_wrong_file(tmp):
    _write(tmp / "mnist" / "train-images-idx3-ubyte.gz", gzip.compress(IDX_IMAGES))
    return load_image_dataset, "mnist", tmp


def _idx_set_with_truncated_images(tmp):
    for stem, content in (("train-images-idx3-ubyte", IDX_IMAGES[:-5]), ("train-labels-idx1-ubyte", IDX_LABELS),
                          ("t10k-images-idx3-ubyte", IDX_IMAGES), ("t10k-labels-idx1-ubyte", IDX_LABELS)):
        _write(tmp / stem, content)
    return load_image_dataset, "idx", tmp


def _read_only_out_dir(tmp):
    out = tmp / "runs"
    _write(out / "metrics.json", "{}")
    out.chmod(0o555)
    return prepare_out_dir, out


BAD_INPUTS = [
    # -- estimators: X and y
    pytest.param(_regressor_fit(_with(X, (0, 1), np.nan), Y), ValueError, "Input X contains NaN", id="nan-in-X"),
    pytest.param(_regressor_fit(_with(X, (2, 0), np.inf), Y), ValueError, "Input X contains infinity", id="inf-in-X"),
    pytest.param(_regressor_fit(X, _with(Y, 3, np.nan)), ValueError, "Input y contains NaN", id="nan-in-y"),
    pytest.param(_regressor_fit(X, _with(Y, 3, -np.inf)), ValueError, "Input y contains infinity", id="inf-in-y"),
    pytest.param(_classifier_fit(X, _with(LABELS, 0, np.nan)), ValueError, "Input y contains NaN",
                 id="classifier-nan-in-y"),
    pytest.param(_regressor_fit(X[:0], Y[:0]), ValueError, r"0 sample\(s\)", id="empty-X"),
    pytest.param(_regressor_fit(X[:, 0], Y), ValueError, "Expected 2D array, got 1D array", id="1d-X"),
    pytest.param(_regressor_fit(X[:, :, None], Y), ValueError, "dim 3", id="3d-X"),
    pytest.param(_regressor_fit(X, Y[:-1]), ValueError, r"inconsistent numbers of samples: \[30, 29\]",
                 id="y-wrong-length"),
    pytest.param(_regressor_fit(X, Y[:, None, None]), ValueError, "dim 3", id="regressor-3d-y"),
    pytest.param(_regressor_fit(X, np.array(["low", "high"] * 15)), ValueError, "target y must be numeric",
                 id="regressor-string-y"),
    pytest.param(_classifier_fit(X, np.c_[LABELS, LABELS]), ValueError, r"y should be a 1d array.*\(30, 2\)",
                 id="classifier-2d-y"),
    pytest.param(_classifier_fit(X, np.zeros(30)), ValueError, "1 class .*needs at least 2", id="single-class"),
    pytest.param(_classifier_fit(X, Y), ValueError, "Unknown label type: continuous", id="classifier-continuous-y"),
    pytest.param(_classifier_fit(X, np.array([1, "a"] * 15, dtype=object)), ValueError,
                 r"mixes labels of text and of other types \('a' and 1\)", id="classifier-mixed-object-labels"),
    pytest.param(_predict(X[:, :2]), ValueError, "X has 2 features, but MetaNeighborhoodsRegressor is expecting 3",
                 id="predict-feature-mismatch"),
    pytest.param(_predict(_with(X, (5, 2), np.nan)), ValueError, "Input X contains NaN", id="predict-nan-in-X"),
    # -- estimators: parameters
    pytest.param(_bad_parameter(similarity="manhattan"), ValueError, "unknown similarity 'manhattan'",
                 id="unknown-similarity"),
    pytest.param(_bad_parameter(step_size="matrix"), ValueError, "unknown step size 'matrix'.*'scalar'",
                 id="unknown-step-size"),
    pytest.param(_bad_parameter(adapt="first"), ValueError, "unknown adapt 'first'.*'last'", id="unknown-adapt"),
    pytest.param(_bad_parameter(key_init="zeros"), ValueError, "unknown key_init 'zeros'", id="unknown-key-init"),
    pytest.param(_bad_parameter(device="tpu"), ValueError, "unknown device 'tpu'", id="unknown-device"),
    pytest.param(_bad_parameter(dictionary_size=-1), ValueError, "dictionary_size must be a non-negative integer",
                 id="negative-dictionary-size"),
    pytest.param(_bad_parameter(temperature=0.0), ValueError, "temperature must be positive", id="zero-temperature"),
    pytest.param(_bad_parameter(temperature=-2.0), ValueError, "temperature must be positive",
                 id="negative-temperature"),
    pytest.param(_bad_parameter(hidden_layer_sizes=(8, 0)), ValueError,
                 "hidden_layer_sizes must be a positive integer or a sequence of them", id="zero-hidden-size"),
    pytest.param(_bad_parameter(hidden_layer_sizes="8"), ValueError,
                 "hidden_layer_sizes must be a positive integer or a sequence of them", id="hidden-sizes-a-string"),
    pytest.param(_bad_parameter(batch_size=0), ValueError, "batch_size must be a positive integer",
                 id="zero-batch-size"),
    pytest.param(_bad_parameter(max_epochs=-1), ValueError, "max_epochs must be a positive integer",
                 id="negative-max-epochs"),
    pytest.param(_bad_parameter(step_size_init=0.0), ValueError, "step_size_init must be positive",
                 id="zero-step-size-init"),
    pytest.param(_bad_parameter(learning_rate=0.0), ValueError, "learning_rate must be positive",
                 id="zero-learning-rate"),
    pytest.param(_bad_parameter(weight_decay=-1e-4), ValueError, "weight_decay must be a non-negative number",
                 id="negative-weight-decay"),
    pytest.param(_bad_parameter(ema_decay=1.0), ValueError, r"ema_decay must be None or a number in \(0, 1\), got 1.0",
                 id="ema-decay-of-one"),
    pytest.param(_bad_parameter(ema_decay="0.9"), ValueError, "ema_decay must be None or a number in",
                 id="ema-decay-text"),
    pytest.param(_bad_parameter(refine_factor=-0.1), ValueError,
                 r"refine_factor must be None or a number in \(0, 1\)",
                 id="negative-refine-factor"),
    # -- the torch module
    pytest.param(_module(similarity="manhattan"), ValueError, "unknown similarity 'manhattan'",
                 id="module-unknown-similarity"),
    pytest.param(_module(step_size="matrix"), ValueError, "unknown step size 'matrix'", id="module-unknown-step-size"),
    pytest.param(_module(adapt="first"), ValueError, "unknown adapt 'first'", id="module-unknown-adapt"),
    pytest.param(lambda tmp: (Attention, "euclidean", 0.0), ValueError, "temperature must be positive",
                 id="attention-zero-temperature"),
    pytest.param(lambda tmp: (Attention, "cosine", -1.0), ValueError, "temperature must be positive",
                 id="attention-negative-temperature"),
    # -- registries and experiments: a misspelt name fails before any data is read or any folder made
    pytest.param(lambda tmp: (create_backbone, "resnet1000"), ValueError, "unknown backbone 'resnet1000'.*convnet4",
                 id="unknown-backbone"),
    pytest.param(lambda tmp: (run_classification, "cifar11", "convnet4", "mn", tmp / "out", 1), ValueError,
                 "unknown image data set 'cifar11'.*cifar10", id="unknown-dataset"),
    pytest.param(lambda tmp: (run_classification, "digits", "convnet4", "knn", tmp / "out", 1), ValueError,
                 "unknown method 'knn'.*mn_ifilm", id="unknown-method"),
    pytest.param(lambda tmp: (run_tables, ["gom", "bostn"], tmp / "out"), ValueError,
                 r"unknown table\(s\) 'bostn'.*boston", id="unknown-table-in-regression-runner"),
    # -- data files
    pytest.param(lambda tmp: (load_csv_table, tmp / "missing.csv", "y"), DataFileError, "missing data file",
                 id="missing-csv"),
    pytest.param(lambda tmp: (load_csv_table, _folder(tmp / "table.csv"), "y"), DataFileError,
                 "table.csv is not a regular file", id="folder-as-csv"),
    pytest.param(lambda tmp: (load_image_dataset, "mnist", tmp), DataFileError,
                 "missing data file .*train-images-idx3-ubyte.gz", id="missing-mnist"),
    pytest.param(_gom_with_one_byte_changed, DataFileError, "has sha256 [0-9a-f]{64}, expected",
                 id="gom-wrong-checksum"),
    pytest.param(_mnist_with_wrong_file, DataFileError, "has sha256 [0-9a-f]{64}, expected",
                 id="mnist-wrong-checksum"),
    pytest.param(_idx_set_with_truncated_images, ValueError, "train-images-idx3-ubyte: truncated: 23 bytes",
                 id="truncated-idx"),
    pytest.param(lambda tmp: (read_idx, _write(tmp / "labels.gz", gzip.compress(IDX_LABELS)[:-6])), ValueError,
                 "labels.gz: damaged gzip stream", id="truncated-gzipped-idx"),
    pytest.param(_csv("a,b,y\n1,2,3\n4,5"), ValueError, "file line 3 of .*table.csv has 2 fields, expected 3",
                 id="truncated-csv"),
    pytest.param(_csv("a,b,y\n"), ValueError, "table.csv has no data rows", id="header-only-csv"),
    pytest.param(_csv("a,b,y\n1,red,3\n"), ValueError, "column 'b' .* is not numeric", id="text-column-csv"),
    pytest.param(_csv("a,b,y\n1,2,inf\n4,5,6\n"), ValueError, "target has 1 NaN/inf", id="inf-in-csv"),
    pytest.param(_csv(b"\x89PNG\r\n\x1a\n\xff\xfe"), ValueError, "table.csv is not a text table in UTF-8",
                 id="binary-file-as-csv"),
    # -- output folders
    pytest.param(lambda tmp: (prepare_out_dir, _write(tmp / "metrics.json", "{}")), NotADirectoryError,
                 "cannot write to output directory .*metrics.json: it is a file, not a folder", id="out-dir-is-a-file"),
    pytest.param(lambda tmp: (prepare_out_dir, _write(tmp / "metrics.json", "{}") / "run"), PermissionError,
                 "cannot write to output directory .*Not a directory", id="out-dir-under-a-file"),
    pytest.param(_read_only_out_dir, PermissionError, "cannot write to output directory .*Permission denied",
                 id="read-only-out-dir", marks=pytest.mark.skipif(IS_ROOT, reason="root may write anywhere")),
]


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    return a == b


@pytest.mark.parametrize("setup, error, message", BAD_INPUTS)
def test_bad_input_fails_early_with_a_clear_message_and_changes_nothing(tmp_path, snapshot, setup, error,
                                                                         message):
    function, *args = setup(tmp_path)
    arguments, files = copy.deepcopy(args), snapshot(tmp_path)
    with pytest.raises(error, match=message) as excinfo:
        function(*args)
    raised_in = Path(str(excinfo.traceback[-1].path))
    assert OUR_CODE in raised_in.parents or raised_in in SKLEARN_CHECKS, f"raised deep inside {raised_in}"
    assert all(_same(a, b) for a, b in zip(args, arguments)), "the arguments were changed"
    assert snapshot(tmp_path) == files, "files were written, changed or removed"


@pytest.mark.parametrize("estimator", [MetaNeighborhoodsRegressor, MetaNeighborhoodsClassifier])
def test_bad_predict_input_leaves_the_fitted_model_as_it_was(estimator):
    model = estimator(**TINY).fit(X, LABELS)
    before = model.predict(X)
    for bad in (X[:, :2], X[:, 0], X[:0], _with(X, (1, 1), np.inf)):
        with pytest.raises(ValueError):
            model.predict(bad)
    np.testing.assert_array_equal(model.predict(X), before)
    assert model.n_features_in_ == 3


def test_cli_refuses_an_output_folder_it_cannot_write_and_keeps_the_file(tmp_path, capsys, snapshot):
    results = _write(tmp_path / "results.md", "# earlier results\n")
    files = snapshot(tmp_path)
    assert main(["regress", "--dataset", "gom", "--out", str(results / "run"), "--quiet"]) == 1
    assert "cannot write to output directory" in capsys.readouterr().err
    assert snapshot(tmp_path) == files


@pytest.mark.parametrize("labels", [
    np.array(["dog", "cat", "emu"]),
    np.array(["dog", "cat", "emu"], dtype=object),
    np.array([30, 10, 20]),
], ids=["str", "object", "int"])
def test_classifier_takes_labels_as_scikit_learn_does(labels):
    y = labels[np.arange(len(X)) % 3]
    model = MetaNeighborhoodsClassifier(**TINY).fit(X, y)
    reference = LogisticRegression().fit(X, y)
    np.testing.assert_array_equal(model.classes_, sorted(set(labels)))
    assert model.classes_.dtype == reference.classes_.dtype
    predictions = model.predict(X)
    assert predictions.dtype == reference.predict(X).dtype and set(predictions) <= set(labels)


# -- properties on random tables -------------------------------------------------------------------------

FINITE = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
FAST = settings(max_examples=15, deadline=None, database=None)  # no .hypothesis folder in the checkout


@st.composite
def tables(draw):
    """n x d finite features, sometimes with a constant column and sometimes with duplicated rows."""
    n, d = draw(st.integers(5, 60)), draw(st.integers(1, 6))
    X_ = draw(hnp.arrays(np.float64, (n, d), elements=FINITE))
    if draw(st.booleans()):
        X_[:, draw(st.integers(0, d - 1))] = draw(FINITE)
    if draw(st.booleans()):
        X_[n // 2 :] = X_[: n - n // 2]
    return X_


@FAST
@given(data=st.data())
def test_regressor_predicts_finite_values_of_the_right_shape_row_by_row(data):
    X_ = data.draw(tables())
    y = data.draw(hnp.arrays(np.float64, len(X_), elements=FINITE))
    model = MetaNeighborhoodsRegressor(**TINY).fit(X_, y)
    predictions = model.predict(X_)
    assert predictions.shape == (len(X_),) and np.isfinite(predictions).all()
    tolerance = dict(rtol=1e-5, atol=1e-6 * (1 + np.ptp(y)))  # float32 rounding, on the targets' scale
    _, first, inverse = np.unique(X_, axis=0, return_index=True, return_inverse=True)
    np.testing.assert_allclose(predictions, predictions[first][inverse.ravel()], **tolerance)  # equal rows alike
    np.testing.assert_allclose(model.predict(X_[::-1]), predictions[::-1], **tolerance)  # whatever their order


@FAST
@given(data=st.data())
def test_classifier_gives_distributions_and_known_labels(data):
    X_ = data.draw(tables())
    y = data.draw(hnp.arrays(np.int64, len(X_), elements=st.integers(0, 3)))
    y[:2] = [0, 1]  # at least two classes
    model = MetaNeighborhoodsClassifier(**TINY).fit(X_, y)
    probabilities = model.predict_proba(X_)
    assert probabilities.shape == (len(X_), len(model.classes_)) and (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert set(model.predict(X_)) <= set(model.classes_)


@pytest.mark.parametrize("value", [1e-6, 1e-40, 1.0])
def test_a_small_constant_column_keeps_scale_1_so_a_new_value_at_prediction_stays_in_range(value):
    """Scaling a constant column by its magnitude multiplied a new value by 1e6 (or refused it, at 1e-40)."""
    mean, scale = standardiser(np.c_[np.full(40, value), np.arange(40.0)])
    assert scale[0] == 1.0 and mean[0] == pytest.approx(value)


def test_a_constant_column_over_many_rows_stays_constant_despite_the_mean_s_rounding():
    """Naval's column of 11,934 times 0.998: the blocked sum's rounding gives it a deviation of 4e-14 of its value,
    which a threshold of a few float64 steps took for real variation (every input then -1, and a new value at
    prediction multiplied by 2.5e13). Its values are all equal: no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean, scale = standardiser(np.c_[np.full(11_934, 0.998), np.arange(11_934.0)])
    assert scale[0] == 1.0 and abs(mean[0] - 0.998) < 1e-12


@pytest.mark.parametrize("sparse", [False, True])
def test_a_column_varying_below_the_constant_threshold_is_named_its_variation_being_lost(sparse):
    """1e12 plus a spread of 1 is taken as constant: its scale is its magnitude, so its variation vanishes from the
    inputs; the user is told which column, and how to keep it (a target's scale stays 1: it keeps its variation)."""
    X = np.c_[1e12 + np.linspace(-1, 1, 50), np.arange(50.0), np.full(50, 3.0)]
    with pytest.warns(UserWarning, match=r"column\(s\) \[0\] vary by less than 1e-12 of their magnitude: taken as "
                                         r"constant, that variation is lost; subtract their offset") as said:
        standardiser(scipy.sparse.csr_matrix(X) if sparse else X)
    assert len(said) == 1 and said[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        standardiser(X[:, :1], target=True)


@pytest.mark.parametrize("value", [5.0, 1e9])
def test_a_constant_target_is_predicted_back_whatever_its_size(value):
    """The target's scale multiplies the network's error at prediction: a constant 1e9 was predicted off by 3.8e8
    when its scale was its magnitude."""
    X_ = np.random.default_rng(0).normal(size=(60, 3))
    model = MetaNeighborhoodsRegressor(**TINY).fit(X_, np.full(60, value))
    assert model.y_scale_[0] == 1.0 and np.abs(model.predict(X_) - value).max() < 5.0


def test_the_classifier_s_early_stopping_rows_hold_every_class():
    """Stratified, as scikit-learn's MLPClassifier: a minority class missing from the validation rows (76 of 200
    seeds, plain) would not count in early stopping or the vanilla fallback."""
    labels = (np.arange(200) < 10).astype(np.int64)
    for seed in range(50):
        train, valid = early_stopping_split(200, 0.1, np.random.RandomState(seed), labels)
        assert labels[valid].sum() == 1 and len(valid) == 20 and sorted([*train, *valid]) == list(range(200))
    train, valid = early_stopping_split(200, 0.1, np.random.RandomState(0), np.r_[labels[:-9], 2])  # a class of 1
    assert len(valid) == 20  # too small a class to stratify: the plain split


def test_the_validation_rows_are_the_fraction_rounded():
    """19 rows at 0.1 hold out 2 (1.9 rounded), so that early stopping runs: truncated to 1, it would not."""
    assert [len(early_stopping_split(n, 0.1, np.random.RandomState(0))[1]) for n in (19, 29)] == [2, 3]


def test_the_classifier_asks_for_validation_rows_that_hold_every_class(monkeypatch):
    from meta_neighborhoods import estimators

    labels = (np.arange(200) < 10).astype(np.int64)
    X = np.random.default_rng(0).normal(size=(200, 3))
    split, seen = estimators.early_stopping_split, []
    monkeypatch.setattr(estimators, "early_stopping_split", lambda *args: seen.append(split(*args)) or seen[-1])
    for seed in range(8):  # a plain split leaves the minority class out on about 3 of them
        MetaNeighborhoodsClassifier(hidden_layer_sizes=(4,), dictionary_size=0, max_epochs=1,
                                    random_state=seed).fit(X, labels)
    assert len(seen) == 8 and all(labels[valid].sum() == 1 for _, valid in seen)


@pytest.mark.parametrize("value", [1e30, 3.3e100])
def test_a_constant_column_of_any_magnitude_standardises_to_about_zero(value):
    """With scale 1, the rounding of a column of 1e30's mean left inputs of 5.6e14: the first loss was inf."""
    rng = np.random.default_rng(0)
    b = rng.normal(size=40)
    X_ = np.c_[np.full(40, value), b]
    mean, scale = standardiser(X_)
    assert abs((X_[0, 0] - mean[0]) / scale[0]) < 1e-6
    model = MetaNeighborhoodsRegressor(**TINY).fit(X_, b + 0.1 * rng.normal(size=40))
    assert np.isfinite(model.predict(X_)).all()


def test_a_value_beyond_float32_is_named_by_its_row_in_the_table_past_the_first_block():
    from meta_neighborhoods.estimator_rows import standardised_rows

    X = np.zeros((5000, 2))
    X[4500, 1] = 1e300
    with pytest.raises(ValueError, match=r"^row 4500, feature 1:"):  # blocks of 4,096 rows: not 'row 404'
        standardised_rows(X, np.arange(5000), np.zeros(2), np.ones(2))
