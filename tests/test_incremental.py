"""partial_fit: one epoch of fit a call, the first cold and the later ones warm, the parameters left as given."""

import copy
import json
import warnings

import numpy as np
import pytest
import torch

from meta_neighborhoods import MetaNeighborhoodsClassifier, MetaNeighborhoodsRegressor, training
from meta_neighborhoods.checkpoint import CheckpointError
from meta_neighborhoods.training_state import carried_from_file, carried_to_file

SMALL = dict(hidden_layer_sizes=(16,), dictionary_size=64, batch_size=32, learning_rate=1e-2, random_state=0)


def _rows(n=240, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    return X, X[:, 0] + 0.3 * rng.normal(size=n)


def test_the_first_call_is_one_epoch_of_fit_on_its_rows_whose_scales_stay():
    """The first call is fit for one epoch without early stopping on its rows (their scales, a dictionary of at most
    their rows); a later call on other rows keeps those scales; the parameters stay the user's."""
    X, y = _rows()
    model = MetaNeighborhoodsRegressor(**SMALL)
    given = model.get_params()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConvergenceWarning: one epoch is what partial_fit asks for
        model.partial_fit(X[:80], y[:80])
    first = MetaNeighborhoodsRegressor(**SMALL, max_epochs=1, early_stopping=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first.fit(X[:80], y[:80])
    np.testing.assert_array_equal(model.predict(X), first.predict(X))
    assert model.get_params() == given and model.network_["dictionary_size"] == 64
    model.partial_fit(X[80:], y[80:])
    np.testing.assert_array_equal(model.x_mean_, first.x_mean_)  # the first call's scales, kept
    assert model.get_params() == given and model.n_iter_ == model.best_epoch_ == len(model.loss_curve_) == 2
    assert model.loss_curve_[0] == first.loss_curve_[0]


def test_a_first_call_of_fewer_rows_than_the_dictionary_says_so_once():
    """Its rows make the dictionary and the scales of every later call: a smaller dictionary than asked is said,
    naming the caller's line, and later calls say nothing."""
    X, y = _rows()
    model = MetaNeighborhoodsRegressor(**SMALL)
    with pytest.warns(UserWarning, match="first call trained on 40 rows: the dictionary holds 40 keys, not dictionary_size=64"
                      ) as said:
        model.partial_fit(X[:40], y[:40])
    assert said[0].filename == __file__ and model.network_["dictionary_size"] == 40
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.partial_fit(X, y)


def _labels(y):
    return np.digitize(y, [-0.5, 0.5])


@pytest.mark.parametrize("estimator", [MetaNeighborhoodsRegressor, MetaNeighborhoodsClassifier])
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_calls_on_the_same_rows_train_as_one_fit_of_as_many_epochs(estimator):
    """AdamW's moments, the weight average, the shuffle and the slot dropout's draws go on from call to call (they
    started again at each call, as a warm start's do): four calls are the weights of a four-epoch fit."""
    X, y = _rows()
    y = y if estimator is MetaNeighborhoodsRegressor else _labels(y)
    extra = {} if estimator is MetaNeighborhoodsRegressor else {"classes": [0, 1, 2]}
    whole = estimator(**SMALL, max_epochs=4, early_stopping=False).fit(X, y)
    assert whole.best_epoch_ == 4  # its last epoch is the one fit keeps: the weights the calls must reach
    model = estimator(**SMALL)
    for _ in range(4):
        model.partial_fit(X, y, **extra)
    assert model.loss_curve_ == whole.loss_curve_
    answer = "predict" if estimator is MetaNeighborhoodsRegressor else "predict_proba"
    np.testing.assert_array_equal(getattr(model, answer)(X), getattr(whole, answer)(X))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_pickle_or_save_and_load_between_calls_keeps_the_run_going(tmp_path):
    """A pickle (deepcopy) and save/load keep the calls' training state: the next call is the one the estimator
    would have made; without that state it would be a warm one-epoch fit, which differs."""
    X, y = _rows()
    model = MetaNeighborhoodsRegressor(**SMALL).partial_fit(X, y)
    copied, loaded = copy.deepcopy(model), MetaNeighborhoodsRegressor.load(model.save(tmp_path / "model"))
    warm = copy.deepcopy(loaded).set_params(warm_start=True, max_epochs=1, early_stopping=False).fit(X, y)
    model.partial_fit(X, y)
    np.testing.assert_array_equal(copied.partial_fit(X, y).predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.partial_fit(X, y).predict(X), model.predict(X))
    assert not np.array_equal(warm.predict(X), model.predict(X))  # the state carried makes a difference
    assert loaded.fit(X, y)._carried == {}  # a fit starts it again, and save writes none then
    assert "carried" not in json.loads(loaded.save(tmp_path / "fitted").read_text())


def _first(entries: dict) -> str:
    return next(iter(entries))


def _moment(carried: dict) -> dict:
    return carried["moments"][_first(carried["moments"])]


DAMAGE = {  # what a crafted file may hold instead of partial_fit's training state
    "a negative moment": lambda c: c["moments"][_first(c["moments"])]["exp_avg_sq"].sub_(1.0),
    "a misshapen moment": lambda c: c["moments"][_first(c["moments"])].update(exp_avg=torch.zeros(3)),
    "a moment of no parameter": lambda c: c["moments"].update(
        ghost={k: t.clone() for k, t in c["moments"][_first(c["moments"])].items()}),
    "a weight that is not finite": lambda c: c["parameters"][_first(c["parameters"])].fill_(float("nan")),
    "a weight missing": lambda c: c["parameters"].pop(_first(c["parameters"])),
    "a short generator": lambda c: c.update(torch=c["torch"][:10]),
    "a byte over 255": lambda c: c["batches"]["generator"].__setitem__(0, 300),
    "a negative step": lambda c: c.update(step=-1),
    "a decay of 1.5": lambda c: c["average"].update(decay=1.5),
    "an average short of a weight": lambda c: c["average"]["average"].pop(_first(c["average"]["average"])),
    "a generator of zeros": lambda c: c.update(torch=torch.zeros_like(c["torch"])),  # mt19937 refuses it
    "a shuffle of zeros": lambda c: c["batches"].update(generator=[0] * len(c["batches"]["generator"])),
    "no shuffle": lambda c: c.update(batches=None),
    "an integer step count": lambda c: _moment(c).update(step=_moment(c)["step"].long()),  # fused AdamW refuses
    "a step count of shape (1,)": lambda c: _moment(c).update(step=_moment(c)["step"].reshape(1)),
    "a step count beyond the run's": lambda c: _moment(c)["step"].fill_(c["step"] + 1),
    "an average of no steps": lambda c: c["average"].update(steps=0),  # would rescale the weights it holds
    "an average of more steps than the run": lambda c: c["average"].update(steps=c["step"] + 1),
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_training_state_in_a_file_is_refused_naming_it(tmp_path, damage):
    X, y = _rows(n=60)
    model = MetaNeighborhoodsRegressor(**SMALL).partial_fit(X, y)
    damage(model._carried)
    with pytest.raises(CheckpointError, match=r"model\.json: partial_fit's carried training state is damaged"):
        MetaNeighborhoodsRegressor.load(model.save(tmp_path / "model"))


def test_tensors_of_no_training_state_are_refused():
    X, y = _rows(n=60)
    model = MetaNeighborhoodsRegressor(**SMALL).partial_fit(X, y)
    tensors, meta = carried_to_file(model._carried)
    assert carried_from_file(tensors, meta, model.model_, "f")["step"] == model._carried["step"]
    for stray in ("stray", "moments.foo.head.layers.0.weight", "x\ny" * 1000):
        with pytest.raises(CheckpointError, match=r"^f: partial_fit's carried .* unknown tensors '[^\n]{,60}\)$"):
            carried_from_file({**tensors, stray: torch.zeros(1)}, meta, model.model_, "f")
    with pytest.raises(CheckpointError, match=r"unknown entries \['extra'\]"):
        carried_from_file(tensors, {**meta, "extra": 1}, model.model_, "f")
    with pytest.raises(CheckpointError, match="step should be a positive count of steps, got 1000000"):
        carried_from_file(tensors, {**meta, "step": 10**400}, model.model_, "f")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_partial_fit_after_fit_goes_on_from_the_network_fit_kept():
    """As a warm fit of one epoch: the curve keeps fit's epochs up to the one it kept, which this call goes on from."""
    X, y = _rows()
    fitted = MetaNeighborhoodsRegressor(**SMALL, max_epochs=60, n_iter_no_change=3).fit(X, y)
    assert fitted.best_epoch_ < fitted.n_iter_  # early stopping dropped the last epochs
    kept = fitted.loss_curve_[:fitted.best_epoch_]
    warm = copy.deepcopy(fitted).set_params(warm_start=True, max_epochs=1, early_stopping=False).fit(X[:50], y[:50])
    fitted.partial_fit(X[:50], y[:50])
    np.testing.assert_array_equal(fitted.predict(X), warm.predict(X))
    assert fitted.loss_curve_ == kept + warm.loss_curve_ and fitted.n_iter_ == fitted.best_epoch_ == len(kept) + 1
    assert (fitted.max_epochs, fitted.early_stopping, fitted.warm_start) == (60, True, False)


def test_a_classifier_s_calls_share_the_classes_given_first_which_a_batch_need_not_all_hold():
    X, _ = _rows()
    y = np.digitize(X[:, 0], [-0.5, 0.5])  # classes 0, 1, 2
    model = MetaNeighborhoodsClassifier(**SMALL)
    with pytest.raises(ValueError, match="classes must be given to the first call of partial_fit"):
        model.partial_fit(X, y)
    assert not hasattr(model, "classes_")
    model.partial_fit(X[y < 2], y[y < 2], classes=[2, 0, 1])  # a batch without class 2
    assert model.classes_.tolist() == [0, 1, 2] and model.predict_proba(X).shape == (len(X), 3)
    model.partial_fit(X[y == 2], y[y == 2])  # one class a batch: fine, the classes are known
    curve, answers = list(model.loss_curve_), model.predict_proba(X)
    for labels, classes, message in [(y + 3, None, r"y has labels \[3, 4, 5\] that are not among the classes"),
                                     (y == 1, None, r"y has labels \[False, True\] that are not among"),
                                     (y, [0, 1], r"continues a network of classes \[0, 1, 2\], but classes gives"),
                                     (y, ["0", "1", "2"], r"classes \[0, 1, 2\], but classes gives \['0', '1', '2'\]")]:
        with pytest.raises(ValueError, match=message):
            model.partial_fit(X, labels, classes=classes)
        assert model.loss_curve_ == curve and model.classes_.tolist() == [0, 1, 2]  # nothing trained or changed
        np.testing.assert_array_equal(model.predict_proba(X), answers)
    with pytest.raises(ValueError, match="classes must hold at least 2 classes"):
        MetaNeighborhoodsClassifier(**SMALL).partial_fit(X, np.zeros(len(X), dtype=int), classes=[0])


def test_labels_of_equal_value_are_one_class_whether_integers_or_floats():
    """As in scikit-learn: a nullable integer column reaches the estimator as floats, beside np.unique's integers
    for ``classes``; both had been refused, as [False, True] rightly are for [0, 1]. The fitted classes keep their
    type, so predict answers as before."""
    X, _ = _rows()
    y = np.digitize(X[:, 0], [-0.5, 0.5])
    model = MetaNeighborhoodsClassifier(**SMALL).partial_fit(X, y.astype(float), classes=np.unique(y))
    model.partial_fit(X, y, classes=[0.0, 1.0, 2.0])
    assert model.classes_.tolist() == [0, 1, 2] and model.predict(X).dtype == y.dtype
    warm = MetaNeighborhoodsClassifier(**SMALL, warm_start=True).fit(X, y).fit(X, y.astype(float))
    assert warm.classes_.dtype == y.dtype


def test_a_refused_call_leaves_the_estimator_and_its_parameters_as_they_were():
    X, y = _rows()
    model = MetaNeighborhoodsRegressor(**SMALL).partial_fit(X, y)
    given, curve = model.get_params(), list(model.loss_curve_)
    untouched = copy.deepcopy(model)
    with pytest.raises(ValueError, match="X has 3 features"):
        model.partial_fit(X[:, :3], y)
    assert model.get_params() == given and model.loss_curve_ == curve
    with pytest.raises(FloatingPointError, match="training loss became"):  # raised in training: the state is kept
        model.partial_fit(X, np.full(len(y), 1e300))
    np.testing.assert_array_equal(model.partial_fit(X, y).predict(X), untouched.partial_fit(X, y).predict(X))
    with pytest.raises(ValueError, match=r"a warm start \(warm_start=True, or a call of partial_fit after the first\) "
                       r"continues the fitted network of outputs 1, but y has 2"):
        model.partial_fit(X, np.c_[y, y])
    with pytest.raises(ValueError, match="partial_fit with leave_one_out=True"):
        MetaNeighborhoodsRegressor(**SMALL, leave_one_out=True).partial_fit(X, y)


def test_a_call_stopped_after_some_steps_leaves_the_carried_state_as_it_was(monkeypatch):
    """Steps taken before the interruption moved AdamW's moments and the weights: none of it may reach the state
    the next call goes on from (the moments are copied in, not shared)."""
    X, y = _rows()
    model = MetaNeighborhoodsRegressor(**SMALL).partial_fit(X, y)
    untouched, steps, step = copy.deepcopy(model), [], training.optimizer_step

    def interrupted(*args):
        step(*args)
        steps.append(1)
        if len(steps) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "optimizer_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.partial_fit(X, y)
    monkeypatch.undo()
    np.testing.assert_array_equal(model.partial_fit(X, y).predict(X), untouched.partial_fit(X, y).predict(X))


def test_a_warning_of_a_call_names_the_caller_s_line_however_deep_the_package_s_frames():
    """Warnings named the frame a fixed number of levels up, which partial_fit's extra frames moved into the
    package: now the first frame outside it."""
    X, y = _rows(n=60)
    weights = np.where(np.arange(60) < 50, 1.0, 1e-60)  # float32 cannot hold these beside 1: dropped, and said
    for model in (MetaNeighborhoodsRegressor(**SMALL), MetaNeighborhoodsClassifier(**SMALL)):
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            model.partial_fit(X, y if model._task == "regression" else y > 0, sample_weight=weights,
                              **({} if model._task == "regression" else {"classes": [False, True]}))
        dropped = [w for w in said if "dropped as weight 0" in str(w.message)]
        assert len(dropped) == 1 and dropped[0].filename == __file__


def test_a_partial_fit_refused_says_what_a_partial_fit_can_do():
    """Found by a user's trial: a changed network was refused as a warm_start=True the user never set, and a set
    of classes was blamed on y (LabelEncoder's 'y should be a 1d array')."""
    X, y = _rows()
    model = MetaNeighborhoodsRegressor(**SMALL).partial_fit(X, y)
    model.set_params(hidden_layer_sizes=(7,))
    with pytest.raises(ValueError, match=r"a warm start \(warm_start=True, or a call of partial_fit after the first\) "
                                         r"cannot continue the fitted network: set_params since fit changed the "
                                         r"weights"):
        model.partial_fit(X, y)
    with pytest.raises(ValueError, match="classes must be a list or 1-D array of the class labels, got a set"):
        MetaNeighborhoodsClassifier(**SMALL).partial_fit(X, X[:, 0] > 0, classes={False, True})
    with pytest.raises(ValueError, match=r"classes must be a list or 1-D array of the class labels, got a list of "
                                         r"shape \(1, 2\)"):
        MetaNeighborhoodsClassifier(**SMALL).partial_fit(X, X[:, 0] > 0, classes=[[False, True]])
    column = MetaNeighborhoodsClassifier(**SMALL)
    with pytest.warns(Warning):  # scikit-learn's: a column vector for a 1-D array
        column.partial_fit(X, X[:, 0] > 0, classes=np.array([[False], [True]]))
    assert column.classes_.tolist() == [False, True]
