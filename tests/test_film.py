"""iFiLM: identity at init, the fused layer == a per-example loop and == the unfused autograd computation
(values, gradients, BatchNorm statistics), backbone hooks."""

import copy
import math
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from meta_neighborhoods.backbones import create_backbone
from meta_neighborhoods.config import SIMILARITIES
from meta_neighborhoods.film import FUSED, FiLMBatchNorm2d, FiLMDictionary, film_norm_layer
from meta_neighborhoods.heads import decayed_parameter_names
from meta_neighborhoods.validation import ConfigError


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _randomise_bn(bn: nn.BatchNorm2d) -> None:
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)


@pytest.mark.parametrize("train", [True, False])
def test_init_equals_plain_batchnorm(train):
    layer, bn = FiLMBatchNorm2d(5), nn.BatchNorm2d(5)
    _randomise_bn(bn)
    layer.bn.load_state_dict(bn.state_dict())
    layer.train(train), bn.train(train)
    x = torch.randn(4, 5, 3, 3) * 2 + 1
    torch.testing.assert_close(layer(x), bn(x))
    torch.testing.assert_close(layer.bn.running_mean, bn.running_mean)
    torch.testing.assert_close(layer.bn.running_var, bn.running_var)


REFERENCE = {"cosine": lambda g, k: g @ k / (g.norm() * k.norm()), "euclidean": lambda g, k: -(g - k).pow(2).sum()}
TEMPERATURES = {"cosine": 0.2, "euclidean": 2.0}  # each kind's logits of order one on the random layers


def test_a_similarity_without_fused_formulas_is_refused_by_ifilm(monkeypatch):
    """The fused operator took any similarity but cosine as the Euclidean one (its else branch): a kind the method
    has (``similarity.KINDS``) that iFiLM has no formulas for is refused; those it has are each tested against the
    reference below."""
    from meta_neighborhoods import similarity

    assert set(TEMPERATURES) == set(REFERENCE) == set(FUSED) == set(SIMILARITIES)
    monkeypatch.setitem(similarity.KINDS, "dot", similarity.KINDS["cosine"])  # a new kind, added to the method only
    similarity.Attention("dot")
    with pytest.raises(ConfigError, match="unknown similarity 'dot'; expected one of 'cosine', 'euclidean'"):
        FiLMBatchNorm2d(4, similarity="dot")


def _reference(layer: FiLMBatchNorm2d, x: torch.Tensor, similarity: str) -> torch.Tensor:
    """Eq. 4 and 5 one example at a time, with explicit similarities and softmax."""
    bn, film = layer.bn, layer.film
    a = F.batch_norm(x, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)  # couples the batch
    temperature = film.attention.log_temperature.exp()
    outputs = []
    for a_i in a:
        g = a_i.mean(dim=(1, 2))
        e = (torch.stack([REFERENCE[similarity](g, k) for k in film.keys]) / temperature).exp()
        w = e / e.sum()
        gamma_hat = sum(w[j] * film.gamma[j] for j in range(len(w)))
        beta_hat = sum(w[j] * film.beta[j] for j in range(len(w)))
        outputs.append((1 + gamma_hat)[:, None, None] * a_i + beta_hat[:, None, None])
    return torch.stack(outputs)


def _random_layer(similarity: str = "cosine", temperature: float = 0.2, **bn_options) -> FiLMBatchNorm2d:
    """A float64 layer of 6 channels and 4 entries, away from its identity init; ``bn_options`` rebuild its BN."""
    layer = FiLMBatchNorm2d(6, size=4, similarity=similarity, temperature=temperature)
    if bn_options:
        layer.bn = nn.BatchNorm2d(6, **bn_options)
    layer = layer.double()
    with torch.no_grad():
        for p in (layer.film.keys, layer.film.gamma, layer.film.beta):
            p.normal_(0, 0.5)
        layer.bn.weight.uniform_(0.5, 1.5)
        layer.bn.bias.normal_()
        if layer.bn.running_mean is not None:
            layer.bn.running_mean.normal_()
            layer.bn.running_var.uniform_(0.5, 2.0)
    return layer


INPUT_NAMES = ["x", "keys", "gamma", "beta", "log_T", "bn.weight", "bn.bias"]


def _inputs(layer: FiLMBatchNorm2d, x: torch.Tensor) -> list[torch.Tensor]:
    """x and every parameter of the layer, in the order of ``INPUT_NAMES``."""
    film = layer.film
    return [x, film.keys, film.gamma, film.beta, film.attention.log_temperature, layer.bn.weight, layer.bn.bias]


def _grads(out: torch.Tensor, upstream: torch.Tensor, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad((out * upstream).sum(), inputs)


@pytest.mark.parametrize("similarity,temperature", TEMPERATURES.items())
def test_batched_layer_matches_per_example_loop(similarity, temperature):
    layer = _random_layer(similarity, temperature)
    x = torch.randn(5, 6, 4, 3, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(5, 6, 4, 3, dtype=torch.float64)

    out = layer.train()(x)
    expected = _reference(layer, x, similarity)
    torch.testing.assert_close(out, expected)
    grads, expected_grads = _grads(out, upstream, _inputs(layer, x)), _grads(expected, upstream, _inputs(layer, x))
    for name, g, e in zip(INPUT_NAMES, grads, expected_grads):
        assert g.abs().sum() > 0, name
        torch.testing.assert_close(g, e, msg=name)


@pytest.mark.parametrize("similarity,temperature", TEMPERATURES.items())
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("bn_options", [{}, {"momentum": None}, {"track_running_stats": False}],
                         ids=["default", "cumulative-average", "untracked"])
def test_fused_layer_equals_the_unfused_computation(similarity, temperature, train, bn_options):
    fused = _random_layer(similarity, temperature, **bn_options).train(train)
    plain = copy.deepcopy(fused)
    for _ in range(2):  # the second step starts from the running statistics the first one left
        x = (torch.randn(5, 6, 4, 3, dtype=torch.float64) * 2 + 1).requires_grad_()
        upstream = torch.randn(5, 6, 4, 3, dtype=torch.float64)
        out, expected = fused(x), plain.unfused(x)
        torch.testing.assert_close(out, expected)
        grads, expected_grads = _grads(out, upstream, _inputs(fused, x)), _grads(expected, upstream, _inputs(plain, x))
        for name, g, e in zip(INPUT_NAMES, grads, expected_grads):
            torch.testing.assert_close(g, e, msg=name)
        torch.testing.assert_close(fused.bn.state_dict(), plain.bn.state_dict())  # running stats, batch count


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_running_statistics_switched_off_after_they_were_kept_are_read_as_batch_norm_reads_them(train):
    """track_running_stats turned off on a BN that has its buffers: in eval BatchNorm still normalises by them, in
    training by the batch without updating them."""
    fused = _random_layer().train(train)
    fused.bn.track_running_stats = False
    plain = copy.deepcopy(fused)
    x = torch.randn(5, 6, 4, 3, dtype=torch.float64) * 2 + 1
    torch.testing.assert_close(fused(x), plain.unfused(x))
    torch.testing.assert_close(fused.bn.state_dict(), plain.bn.state_dict())


def test_pooled_outputs_below_the_norm_floor_are_clamped_as_f_normalize_clamps_them():
    """F.normalize floors a norm at 1e-12, and there its gradient is a plain scale. A zero BN weight makes
    every pooled BN output the BN's bias exactly, here of norm ~1e-13."""
    fused = _random_layer().train()
    with torch.no_grad():
        fused.bn.weight.zero_()
        fused.bn.bias.normal_(0, 1e-13)
    plain = copy.deepcopy(fused)
    x = torch.randn(5, 6, 4, 3, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(5, 6, 4, 3, dtype=torch.float64)
    out, expected = fused(x), plain.unfused(x)
    torch.testing.assert_close(out, expected)
    for name, g, e in zip(INPUT_NAMES, _grads(out, upstream, _inputs(fused, x)),
                          _grads(expected, upstream, _inputs(plain, x))):
        torch.testing.assert_close(g, e, msg=name)


@pytest.mark.parametrize("similarity", SIMILARITIES)
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_fused_layer_passes_gradcheck(similarity, train):
    layer = _random_layer(similarity, 0.5).train(train)
    names = [name for name, _ in layer.named_parameters()]

    def forward(x, *params):
        return torch.func.functional_call(layer, dict(zip(names, params)), (x,))

    x = torch.randn(3, 6, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(forward, (x, *layer.parameters()))


def test_under_autocast_the_layer_trains_in_the_lower_precision():
    """The fused operator's formulas hold one dtype (its backward had failed on bfloat16 under autocast)."""
    layer, conv = _random_layer().float().train(), nn.Conv2d(6, 6, 1)
    x = torch.randn(5, 6, 4, 3)
    expected = copy.deepcopy(layer)(conv(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(conv(x))
    out.float().square().sum().backward()
    torch.testing.assert_close(out.float(), expected, atol=0.1, rtol=0.05)
    assert all(p.grad is not None and p.grad.isfinite().all() for p in layer.parameters())


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_torch_func_transforms_take_the_layer(train):
    """vmap over examples (in evaluation, as BatchNorm: a batch of one has no batch statistics) and grad through
    functional_call give what the fused operator gives (they had failed: it is an old-style autograd.Function)."""
    layer = _random_layer().train(train)
    x = torch.randn(5, 6, 4, 3, dtype=torch.float64)
    params = dict(layer.named_parameters())
    if not train:
        rows = torch.func.vmap(lambda row: layer(row[None])[0])(x)
        torch.testing.assert_close(rows, layer(x))

    def loss(p, buffers):  # the buffers an input, as torch.func asks of what a training step updates
        return torch.func.functional_call(layer, (p, buffers), (x,)).square().sum()

    expected = torch.autograd.grad(loss(params, copy.deepcopy(dict(layer.named_buffers()))), list(params.values()))
    got = torch.func.grad(loss)(params, dict(layer.named_buffers()))
    for name, got, want in zip(params, got.values(), expected):
        torch.testing.assert_close(got, want, msg=name)


def test_an_empty_batch_gives_an_empty_output_as_batch_norm_does():
    layer, bn = FiLMBatchNorm2d(3), nn.BatchNorm2d(3)
    assert layer(torch.randn(0, 3, 2, 2)).shape == bn(torch.randn(0, 3, 2, 2)).shape == (0, 3, 2, 2)
    torch.testing.assert_close(layer.bn.state_dict(), bn.state_dict())


@pytest.mark.parametrize("shape", [(2, 3, 4), (1, 3, 1, 1)], ids=["not-4d", "one-value-per-channel"])
def test_bad_inputs_raise_batchnorm2d_s_errors(shape):
    x = torch.randn(shape)
    with pytest.raises(ValueError) as plain:
        nn.BatchNorm2d(3)(x)
    with pytest.raises(ValueError, match=re.escape(str(plain.value))):
        FiLMBatchNorm2d(3)(x)


def test_temperature_default_is_a_contrastive_cosine_attention():
    attention = FiLMBatchNorm2d(3).film.attention
    assert attention.similarity == "cosine"
    assert isinstance(attention.log_temperature, nn.Parameter)
    assert math.isclose(attention.temperature.item(), 0.2, rel_tol=1e-6)


def _count(model):
    films = [m for m in model.modules() if isinstance(m, FiLMBatchNorm2d)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    return len(films), len(bns)


@pytest.mark.parametrize("name,where,expected", [
    ("convnet4", "all", 4), ("convnet4", "last", 4), ("resnet29", "all", 28), ("resnet29", "last", 3),
])
def test_norm_layer_wraps_the_requested_batchnorms(name, where, expected):
    plain = create_backbone(name, in_channels=1)
    model = create_backbone(name, in_channels=1, norm_layer=film_norm_layer(where))
    n_film, n_bn = _count(model)
    assert n_film == expected
    assert n_bn == _count(plain)[1]  # the same BNs, some of them wrapped
    if where == "last" and name == "resnet29":
        last = {model.blocks[2].bn3, model.blocks[5].bn3, model.final_bn}
        assert {m for m in model.modules() if isinstance(m, FiLMBatchNorm2d)} == last


def test_film_backbone_trains_every_dictionary_parameter():
    model = create_backbone("convnet4", in_channels=1, norm_layer=film_norm_layer("all"))
    params = [p for m in model.modules() if isinstance(m, FiLMDictionary) for p in m.parameters()]
    assert not [n for n in decayed_parameter_names(model) if ".film." in n]  # iFiLM is exempt from weight decay
    assert len(params) == 4 * 4  # keys, gamma, beta, log-temperature per layer
    film_names = {n for n, p in model.named_parameters() if ".film." in n}
    assert {id(p) for p in params} == {id(p) for n, p in model.named_parameters() if n in film_names}
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, FiLMBatchNorm2d):
                m.film.gamma.normal_(0, 0.1)
                m.film.beta.normal_(0, 0.1)
    out = model(torch.randn(4, 1, 12, 12))
    assert out.shape == (4, model.out_features)
    (out * torch.randn_like(out)).sum().backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
        if ".film." in n:
            assert p.grad.abs().sum() > 0, n


def test_unknown_where_raises_and_lists_choices():
    with pytest.raises(ValueError, match="'all', 'last'"):
        film_norm_layer("first")


def test_bad_dictionary_options_are_refused_before_a_backbone_is_built():
    with pytest.raises(ValueError, match="temperature"):
        film_norm_layer("all", temperature=-1.0)


def test_checking_the_options_draws_no_random_number():
    """The check built a dictionary, which drew keys: every iFiLM model then started elsewhere for its seed."""
    torch.manual_seed(0)
    film_norm_layer("all", size=4)
    after_check = torch.rand(3)
    torch.manual_seed(0)
    torch.testing.assert_close(after_check, torch.rand(3))
