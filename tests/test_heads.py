"""The head contract (heads/base.py): the fast-path registry, which parameters adapt and which decay."""

import pytest
import torch
from torch import nn

from meta_neighborhoods.heads import (
    FAST_PATHS, CosineHead, MLPHead, PeriodicMLPHead, adapted_parameter_names, decayed_parameter_names, fast_path,
    fast_path_for, last_layer_path,
)
from meta_neighborhoods.heads.mlp import adapt_last_layer
from meta_neighborhoods.model import MetaNeighborhoods
from meta_neighborhoods.similarity import Attention
from meta_neighborhoods.validation import ConfigError


class TwoLayers(nn.Module):
    """A head without its own ``adapted_parameter_names``: the defaults apply."""

    def __init__(self):
        super().__init__()
        self.in_features, self.out_features = 3, 2
        self.first, self.second = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, z):
        return self.second(torch.relu(self.first(z)))


def test_a_head_without_a_fast_path_gets_the_defaults():
    head = TwoLayers()
    assert fast_path_for(head) is None
    assert adapted_parameter_names(head, "all") == ["first.weight", "first.bias", "second.weight", "second.bias"]
    assert adapted_parameter_names(head, "last") == ["second.weight", "second.bias"]
    assert decayed_parameter_names(head) == ["first.weight", "second.weight"]


def test_fast_paths_are_found_by_exact_type():
    class Subclass(MLPHead):
        pass

    assert fast_path_for(MLPHead(3, (), 1)) is FAST_PATHS[MLPHead]
    assert fast_path_for(Subclass(3, (), 1)) is None  # it may change the forward pass the closed form relies on


def test_a_registered_fast_path_is_what_the_inner_loop_runs():
    calls = []

    class Marked(TwoLayers):
        pass

    @fast_path(Marked)
    def marked(head, z, keys, values, weights, loop):
        calls.append((loop.task, loop.steps, sorted(loop.alphas)))
        return torch.zeros(len(z), head.out_features)

    try:
        model = MetaNeighborhoods(Marked(), dictionary_size=4, inner_steps=2, adapt="last")
        assert model(torch.randn(5, 3)).shape == (5, 2)
        assert calls == [("regression", 2, ["second.bias", "second.weight"])]
    finally:
        del FAST_PATHS[Marked]


def test_the_cosine_head_is_tau_times_cosines_to_its_prototypes_with_tau_learned_from_10():
    """The authors' cosine classifier starts at tau = 10 (DESIGN.md): at tau = 1 the logits, cosines in [-1, 1],
    keep the softmax from ever being confident. Only the directions of features and prototypes count."""
    torch.manual_seed(0)
    head = CosineHead(5, 3).double()
    assert head.scale.item() == 10.0 and head.scale.requires_grad
    x = torch.randn(4, 5, dtype=torch.float64)
    weight = head.weight.detach()
    expected = 10.0 * (x / x.norm(dim=1, keepdim=True)) @ (weight / weight.norm(dim=0, keepdim=True))
    torch.testing.assert_close(head(x), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(head(3 * x), expected, rtol=1e-12, atol=0)
    assert CosineHead(5, 3, scale=2.5).scale.item() == 2.5


def test_weight_decay_follows_the_contract():
    model = MetaNeighborhoods(CosineHead(4, 3), task="classification", dictionary_size=5, extractor=nn.Linear(6, 4))
    decayed, exempt = model.parameter_groups(1e-3, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert [names[id(p)] for p in decayed["params"]] == ["extractor.weight"]  # not the cosine head's prototypes
    assert decayed["weight_decay"] == 1e-3 and exempt["weight_decay"] == 0.0
    assert {names[id(p)] for p in exempt["params"]} == set(names.values()) - {"extractor.weight"}


@pytest.mark.parametrize("head, shape", [(MLPHead(5, (8,), 1), (2, 3, 5)), (MLPHead(5, (8,), 1), (5,)),
                                         (MLPHead(5, (8,), 1), (4, 6)), (CosineHead(5, 3), (2, 3, 5))])
@pytest.mark.parametrize("options", [{}, {"inner_steps": 2}, {"top_k": 4}, {"dictionary_size": 0}])
def test_features_that_are_not_rows_of_the_heads_width_are_refused(head, shape, options):
    """Each row is adapted to its own neighbourhood: a (*, d) batch would be mixed up (two inner steps gave wrong
    numbers, silently), so the model asks for (batch, in_features), as its error says."""
    task = "classification" if isinstance(head, CosineHead) else "regression"
    model = MetaNeighborhoods(head, task=task, **{"dictionary_size": 32, **options})
    got = rf"\({', '.join(map(str, shape))},?\)"
    with pytest.raises(ValueError, match=rf"takes features of shape \(batch, 5\), got {got}"):
        model(torch.randn(shape))


def test_an_extractor_of_another_width_than_the_head_is_named():
    """The rows were right; the extractor's output was not the head's width: the error showed that output as if
    it were the input."""
    model = MetaNeighborhoods(MLPHead(7, (8,), 1), dictionary_size=4, extractor=torch.nn.Linear(8, 6))
    with pytest.raises(ValueError, match=r"head takes features of shape \(batch, 7\), its extractor gave \(5, 6\)"):
        model(torch.randn(5, 8))


def test_the_models_repr_shows_the_methods_settings():
    text = repr(MetaNeighborhoods(MLPHead(5, (8,), 1), dictionary_size=16, top_k=4, inner_steps=2, temperature=0.5,
                                  step_size="layer"))
    for shown in ("top_k=4", "size=16", "inner_steps=2", "temperature=0.5", "kind='layer'", "adapted=['layers.1"):
        assert shown in text, shown
    assert "vanilla" in repr(MetaNeighborhoods(MLPHead(5, (8,), 1), dictionary_size=0))


def test_a_model_built_on_the_meta_device_prints():
    """Printing reads the temperature, which a meta tensor does not hold."""
    with torch.device("meta"):
        assert "temperature=?" in repr(MetaNeighborhoods(MLPHead(6, (8,), 1), dictionary_size=40, top_k=4))


class WithDropout(TwoLayers):
    def forward(self, z):
        return self.second(nn.functional.dropout(torch.relu(self.first(z)), 0.5, self.training))


@pytest.mark.parametrize("implementation", ["generic", "loop"])
def test_a_head_with_dropout_trains_through_the_generic_loop(implementation):
    torch.manual_seed(0)
    model = MetaNeighborhoods(WithDropout(), dictionary_size=4, implementation=implementation)
    z = torch.randn(5, 3)
    model(z).sum().backward()  # vmap's default refused the random draw
    assert model.head.first.weight.grad.abs().sum() > 0
    many = model(z[:1].repeat(16, 1))
    assert len(torch.unique(many, dim=0)) > 1  # each input its own draw, as the head contract says
    model.eval()
    torch.testing.assert_close(model(z), model(z))  # no dropout at evaluation


@pytest.mark.parametrize("norm", [nn.BatchNorm1d(4), nn.SyncBatchNorm(4)])
def test_a_head_with_batch_normalisation_is_refused_by_name(norm):
    head = TwoLayers()
    head.norm = norm
    with pytest.raises(ConfigError, match=r"batch normalisation \(norm\).*extractor"):
        MetaNeighborhoods(head, dictionary_size=4)
    MetaNeighborhoods(head, dictionary_size=0)  # the vanilla network has no inner loop: nothing to refuse


@pytest.mark.parametrize("build, error, message", [
    (lambda: MetaNeighborhoods(MLPHead(3, (4,), 1), {"dictionary_size": 4}), TypeError, "config must be an MNConfig"),
    (lambda: MetaNeighborhoods("head"), TypeError, "head must be a torch.nn.Module with in_features"),
    (lambda: CosineHead(0, 4), ConfigError, "CosineHead's in_features must be a positive integer, got 0"),
    (lambda: MLPHead(3, 1), ConfigError, "MLPHead's hidden must be a sequence of layer widths"),
    (lambda: MLPHead(3, (4, 0)), ConfigError, r"MLPHead's hidden\[1\] must be a positive integer, got 0"),
    (lambda: PeriodicMLPHead(3, 2, (4, True)), ConfigError, r"PeriodicMLPHead's hidden\[1\] must be a positive"),
    (lambda: PeriodicMLPHead(3, 2, frequencies=0), ConfigError, "PeriodicEmbedding's frequencies must be a positive"),
    (lambda: PeriodicMLPHead(3, 2, sigma=-1.0), ConfigError, "PeriodicEmbedding's sigma must be positive"),
    (lambda: _training(4).predict_features(torch.randn(5, 3), torch.full((5,), 9)), ValueError,
     r"own_slot must hold one integer slot in \[-1, 4\) per row"),  # was: taken as -1
    (lambda: _training(4).predict_features(torch.randn(5, 3), torch.full((4,), -1)), ValueError,
     r"got torch.int64 of shape \(4,\)"),
    (lambda: _training(4).predict_features(torch.randn(5, 3), torch.full((5,), 0.5)), ValueError,
     "got torch.float32 of shape"),  # was: a fraction masked no key, and leave-one-out was silently off
    (lambda: MetaNeighborhoods(Parameterless(), dictionary_size=4), ConfigError,
     "Parameterless has no parameters for the inner loop to finetune"),  # was: an IndexError
    (lambda: _implementation("vmap"), ConfigError, "unknown implementation 'vmap'"),  # was: the generic path
    (lambda: Attention("cosine", 1e-50), ConfigError, "temperature must be within float32's range"),  # was: all NaN
    (lambda: _training(4).dictionary.init_from_samples(torch.randn(5, 3), torch.randn(4, 1)), ValueError,
     "4 targets for 5 samples"),
])
def test_the_modules_refuse_wrong_arguments_naming_them(build, error, message):
    with pytest.raises(error, match=message):
        build()


def _training(size: int) -> MetaNeighborhoods:
    return MetaNeighborhoods(MLPHead(3, (4,), 1), dictionary_size=size).train()


class Parameterless(nn.Module):
    in_features = out_features = 3

    def forward(self, z):
        return z


def _implementation(name: str) -> torch.Tensor:
    """A prediction after ``adaptation.implementation`` was set to ``name`` (the ONNX export switches it)."""
    model = _training(4)
    model.adaptation.implementation = name
    return model(torch.randn(5, 3))


def test_the_lazy_exports_are_listed():
    import meta_neighborhoods

    assert {"MetaNeighborhoods", "MetaNeighborhoodsRegressor", "__version__"} <= set(dir(meta_neighborhoods))


def test_an_own_slot_equal_to_the_dictionary_size_is_refused():
    """Slot S is one past the last slot: refused as 9 is. Accepted, it masks no key, and the row attends to its
    own key and target (leave-one-out silently off)."""
    with pytest.raises(ValueError, match=r"own_slot must hold one integer slot in \[-1, 4\) per row"):
        _training(4).predict_features(torch.randn(5, 3), torch.full((5,), 4))


class Declared(nn.Module):
    """Any body under a last linear layer it declares; registered for the last layer's path where a test says so."""

    def __init__(self, bias: bool = True, tied: bool = False):
        super().__init__()
        self.in_features, self.out_features = 3, 2
        self.scale = nn.Parameter(torch.ones(3))
        self.mix = nn.Linear(6, 6, bias=bias)
        self.last_layer = self.mix if tied else nn.Linear(6, 2, bias=bias)

    def body(self, z):
        return torch.cat([torch.sin(self.scale * z), z], dim=-1)

    def forward(self, z):
        return self.last_layer(self.body(z))


class Doubled(Declared):
    """A subclass that breaks the contract: its forward is not ``last_layer(body(x))``."""

    def forward(self, z):
        return 2 * super().forward(z)


def test_a_declared_last_layer_takes_linear_layers_path_only_where_registered_and_adapted_alone():
    head = Declared()
    assert adapted_parameter_names(head, "last") == ["last_layer.weight", "last_layer.bias"]
    assert fast_path_for(head, ["last_layer.weight", "last_layer.bias"]) is None  # declared, not registered
    last_layer_path(Declared)
    try:
        path = FAST_PATHS[Declared]
        assert fast_path_for(head, ["last_layer.bias", "last_layer.weight"]) is path is adapt_last_layer
        assert fast_path_for(head) is None and fast_path_for(head, adapted_parameter_names(head, "all")) is None
        assert fast_path_for(Declared(bias=False), ["last_layer.weight"]) is None  # the path steps a weight and bias
        assert fast_path_for(Declared(tied=True), ["mix.weight", "mix.bias"]) is None  # the body's own tensors
        assert fast_path_for(Doubled(), ["last_layer.weight", "last_layer.bias"]) is None  # exact type only
        model = MetaNeighborhoods(Doubled(), dictionary_size=4, adapt="last")
        with pytest.raises(ValueError, match="no fast adaptation path for Doubled"):
            model.adaptation.implementation = "fast"
            model(torch.randn(5, 3))
    finally:
        del FAST_PATHS[Declared]


def test_the_periodic_head_embeds_each_feature_beside_itself_under_its_declared_last_layer():
    torch.manual_seed(0)
    head = PeriodicMLPHead(3, 2, hidden=(7,), frequencies=4, embedding=5)
    x = torch.randn(6, 3)
    embedded = head.embedding(x)
    assert embedded.shape == (6, 3 * (5 + 1)) and torch.equal(embedded[:, :3], x)
    assert (embedded[:, 3:] >= 0).all()  # a ReLU of each feature's cosines and sines
    angles = 2 * torch.pi * x[:, :1] * head.embedding.frequencies[0]  # the first feature's, by hand
    first = torch.relu(torch.cat([angles.cos(), angles.sin()], 1) @ head.embedding.weight[0] + head.embedding.bias[0])
    torch.testing.assert_close(embedded[:, 3:8], first)
    torch.testing.assert_close(head(x), head.last_layer(head.body(x)))
    assert head.body(x).shape == (6, 7)
    assert adapted_parameter_names(head, "last") == ["last_layer.weight", "last_layer.bias"]
    assert len(adapted_parameter_names(head, "all")) == 7


def test_the_periodic_head_s_embedding_is_decayed_unless_it_asks_otherwise():
    """As measured by default; exempt, as the reference code (rtdl, TabM) has it, with decay_embedding=False."""
    names = {flag: decayed_parameter_names(PeriodicMLPHead(3, 1, hidden=(7,), decay_embedding=flag))
             for flag in (True, False)}
    embedded = {"embedding.frequencies", "embedding.weight", "embedding.bias"}
    assert embedded <= set(names[True]) and not embedded & set(names[False])
    assert set(names[True]) - embedded == set(names[False]) == {"hidden.0.weight", "last_layer.weight"}


@pytest.mark.parametrize("options", [{"hidden": 128}, {"hidden": (0,)}, {"out_features": 0}, {"frequencies": 0},
                                     {"sigma": 0.0}, {"embedding": 1.5}])
def test_a_bad_periodic_head_is_refused_naming_its_settings(options):
    with pytest.raises(ConfigError, match="Periodic"):
        PeriodicMLPHead(3, **{"out_features": 1, **options})
