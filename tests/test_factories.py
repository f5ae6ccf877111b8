"""Bring your own network: the estimators' ``head`` and ``extractor`` factories, checked, trained, cloned and
exported; a bad factory is refused naming the parameter."""

import functools

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from torch import nn

from meta_neighborhoods.estimators import MetaNeighborhoodsClassifier, MetaNeighborhoodsRegressor
from meta_neighborhoods import adaptation
from meta_neighborhoods.heads import MLPHead, PeriodicMLPHead, fast_path_for
from meta_neighborhoods.estimator_rows import standardise

FAST = dict(dictionary_size=8, max_epochs=20, learning_rate=1e-2, batch_size=32, n_iter_no_change=5, random_state=0)


class TanhHead(nn.Module):
    """A head of one's own: an ``nn.Sequential`` with the head contract's two sizes; no fast path."""

    def __init__(self, in_features, out_features, width=16):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.net = nn.Sequential(nn.Linear(in_features, width), nn.Tanh(), nn.Linear(width, out_features))

    def forward(self, z):
        return self.net(z)


def widening(n_features, width=12):
    """An extractor of one's own: rows of n_features to 12 features."""
    return nn.Sequential(nn.Linear(n_features, width), nn.ReLU())


def _table(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = np.sin(2 * X[:, 0]) + X[:, 1]
    return X, y, np.where(X[:, 0] * X[:, 1] > 0, "same", "opposite")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("cls", [MetaNeighborhoodsRegressor, MetaNeighborhoodsClassifier])
def test_a_head_of_one_s_own_trains_through_the_generic_inner_loop(cls):
    X, y, labels = _table()
    target = y if cls is MetaNeighborhoodsRegressor else labels
    model = cls(**FAST, head=TanhHead, early_stopping=False).fit(X, target)  # 20 epochs, whatever 12 rows say
    head, n_outputs = model.model_.head, 1 if cls is MetaNeighborhoodsRegressor else 2
    assert type(head) is TanhHead and fast_path_for(head) is None and head.out_features == n_outputs
    assert model.predict(X).shape == (120,) and model.score(X, target) > 0.6


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_an_extractor_of_one_s_own_holds_the_keys_among_its_features():
    """The head takes the extractor's 12 features, and the keys start at the features of training rows."""
    X, y, _ = _table()
    model = MetaNeighborhoodsRegressor(**{**FAST, "max_epochs": 1, "learning_rate": 1e-12, "early_stopping": False},
                                       extractor=widening).fit(X, y)
    assert model.model_.head.in_features == 12 and model.network_["temperature"] == 12.0  # T = d of the key space
    keys = model.model_.dictionary.keys.detach()
    with torch.no_grad():
        features = model.model_.extractor(torch.from_numpy(standardise(X, model.x_mean_, model.x_scale_)))
    nearest = (keys[:, None] - features[None]).abs().amax(dim=2).min(dim=1).values  # to each key, the closest row
    assert keys.shape == (8, 12) and nearest.max() < 1e-5
    both = MetaNeighborhoodsRegressor(**FAST, extractor=widening, head=TanhHead).fit(X, y)
    assert both.model_.head.in_features == 12 and both.predict(X).shape == (120,)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("cls", [MetaNeighborhoodsRegressor, MetaNeighborhoodsClassifier])
def test_the_periodic_head_is_a_factory_whose_last_layer_takes_the_fast_path(cls, monkeypatch):
    """``head=PeriodicMLPHead`` as it is; at the default ``adapt="last"`` the generic inner loop never runs."""
    monkeypatch.setattr(adaptation, "adapt_generic", lambda *a, **k: pytest.fail("the generic inner loop ran"))
    X, y, labels = _table()
    target = y if cls is MetaNeighborhoodsRegressor else labels
    model = cls(**FAST, head=functools.partial(PeriodicMLPHead, hidden=(16,))).fit(X, target)
    assert type(model.model_.head) is PeriodicMLPHead and model.predict(X).shape == (120,)
    assert model.score(X, target) > 0.6
    assert model.model_.adaptation.step_size.names == ["last_layer.weight", "last_layer.bias"]


def test_without_factories_the_network_is_the_paper_s():
    X, y, _ = _table(n=40)
    model = MetaNeighborhoodsRegressor(**{**FAST, "max_epochs": 2}).fit(X, y)
    assert model.get_params()["head"] is None and model.get_params()["extractor"] is None
    assert type(model.model_.head) is MLPHead and fast_path_for(model.model_.head) is not None
    assert isinstance(model.model_.extractor, nn.Identity)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_factories_are_parameters_scikit_learn_clones_and_searches():
    X, y, _ = _table(n=60)
    narrow, wide = functools.partial(TanhHead, width=2), functools.partial(TanhHead, width=32)
    model = MetaNeighborhoodsRegressor(**{**FAST, "max_epochs": 3}, head=narrow, extractor=widening)
    copy = clone(model)
    assert copy.get_params()["head"].keywords == {"width": 2} and copy.extractor is widening
    search = GridSearchCV(model, {"head": [narrow, wide]}, cv=2).fit(X, y)
    assert search.best_estimator_.model_.head.net[0].out_features in (2, 32)
    assert len(search.cv_results_["params"]) == 2


def test_a_head_the_package_ships_is_a_setting_by_name():
    """head="periodic" is PeriodicMLPHead of hidden_layer_sizes, and head="mlp" the default MLP, fit for fit; every
    name the settings accept builds one (config.HEADS is NAMED_HEADS's keys)."""
    from meta_neighborhoods.config import HEADS
    from meta_neighborhoods.factories import NAMED_HEADS

    assert tuple(NAMED_HEADS) == HEADS
    X, y, _ = _table(n=60)
    heads = ("periodic", functools.partial(PeriodicMLPHead, hidden=(16,)), "mlp", None)
    answers = [MetaNeighborhoodsRegressor(**FAST, hidden_layer_sizes=(16,), head=head).fit(X, y).predict(X)
               for head in heads]
    np.testing.assert_array_equal(answers[0], answers[1])
    np.testing.assert_array_equal(answers[2], answers[3])


@pytest.mark.parametrize("params, message", [
    ({"head": 3}, "head must be None, one of 'mlp', 'periodic' or a callable returning a torch.nn.Module .*got 3"),
    ({"head": nn.Linear(4, 1)}, "head must be None, one of .* or a callable .*not a built module"),
    ({"head": "perodic"}, "unknown head 'perodic'; expected one of 'mlp', 'periodic'"),
    ({"head": lambda d, o: "a head"}, r"head\(4, 1\) returned str, not a torch.nn.Module"),
    ({"head": lambda d, o: TanhHead(d + 1, o)}, r"head\(4, 1\) returned a head with in_features=5 and "
                                                 r"out_features=1; the head contract .* needs in_features=4"),
    ({"head": lambda d, o: _Liar(d, o)}, r"head\(4, 1\) answers 2 rows with shape \(2, 3\), not \(2, 1\)"),
    ({"extractor": "identity"}, "extractor must be None or a callable"),
    ({"extractor": lambda d: nn.Linear(d + 2, 8)}, r"extractor\(4\) cannot take rows of 4 features \(RuntimeError"),
    ({"extractor": lambda d: nn.Unflatten(1, (2, 2))}, r"extractor\(4\) answers 2 rows with shape \(2, 2, 2\): the "
                                                       r"head needs a matrix"),
    ({"extractor": lambda d: 7}, r"extractor\(4\) returned int, not a torch.nn.Module"),
    ({"head": functools.partial(MLPHead, hidden=(16,))}, r"head\(4, 1\) cannot be called \(.*\); a head "
                                                        r"factory is called as head\(n_features, n_outputs\)"),
    ({"extractor": lambda: nn.Identity()}, r"extractor\(4\) cannot be called .* called as extractor\(n_features\)"),
    ({"extractor": lambda d: nn.Linear(d, 0)}, r"shape \(2, 0\): .* with at least one feature"),  # was: temperature 0
    ({"head": MLPHead}, "MLPHead's hidden must be a sequence .* use the estimators' hidden_layer_sizes"),
])
def test_a_bad_factory_is_refused_naming_it(params, message):
    X, y, _ = _table(n=40)
    with pytest.raises(ValueError, match=message):
        MetaNeighborhoodsRegressor(**FAST, **params).fit(X, y)


class _Liar(TanhHead):
    """Claims out_features=1 but answers 3 columns."""

    def __init__(self, in_features, out_features):
        super().__init__(in_features, 3)
        self.out_features = out_features


def test_nn_linear_meets_the_head_contract():
    """``nn.Linear`` has in_features and out_features: a factory may return it as it is."""
    X, y, _ = _table(n=40)
    model = MetaNeighborhoodsRegressor(**{**FAST, "max_epochs": 2}, head=nn.Linear).fit(X, y)
    assert isinstance(model.model_.head, nn.Linear) and model.predict(X).shape == (40,)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_save_refuses_a_factory_and_says_what_to_do(tmp_path):
    X, y, _ = _table(n=40)
    model = MetaNeighborhoodsRegressor(**{**FAST, "max_epochs": 2}, extractor=widening).fit(X, y)
    with pytest.raises(ValueError, match=r"cannot save a model built by a custom extractor: .* pickle or joblib .* a lambda does not pickle\)$"):
        model.save(tmp_path / "model")
    assert not list(tmp_path.iterdir())


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_onnx_export_of_networks_of_one_s_own(tmp_path):
    """An extractor with a fast-path head exports whole, as does a head of one's own without neighbours; a head
    without a fast path cannot take its inner loop into the graph, and says so."""
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    X, y, _ = _table(n=60)
    for name, params in {"extractor": {"extractor": widening},
                         "vanilla_head": {"head": TanhHead, "dictionary_size": 0}}.items():
        model = MetaNeighborhoodsRegressor(**{**FAST, "max_epochs": 3, **params}).fit(X, y)
        session = onnxruntime.InferenceSession(str(model.export_onnx(tmp_path / f"{name}.onnx")))
        answers = session.run(None, {"input": X.astype(np.float32)})[0]
        np.testing.assert_allclose(answers, model.predict(X), atol=1e-4, rtol=0)
    generic = MetaNeighborhoodsRegressor(**{**FAST, "max_epochs": 2}, head=TanhHead).fit(X, y)
    with pytest.raises(ValueError, match="cannot export the inner loop of a TanhHead head to ONNX"):
        generic.export_onnx(tmp_path / "generic.onnx")


def test_an_error_inside_a_factory_that_takes_the_sizes_is_its_own():
    def broken(n_features, n_outputs):
        return nn.Linear(n_features, n_outputs, bias="yes", no_such_option=1)

    X, y, _ = _table(n=40)
    with pytest.raises(TypeError, match="no_such_option"):  # not blamed on how the factory is called
        MetaNeighborhoodsRegressor(**FAST, head=broken).fit(X, y)


def test_the_shape_check_leaves_a_factory_s_module_in_its_own_mode():
    from torch import nn

    from meta_neighborhoods.factories import build_extractor

    extractor, width = build_extractor(lambda n: nn.Sequential(nn.Linear(n, 3), nn.Dropout(0.5)), 4)
    assert width == 3 and extractor.training and extractor[1].training
