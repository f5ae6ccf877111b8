"""iFiLM: identity at init, batched layer == per-example loop (values and gradients), backbone hooks."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from meta_neighborhoods.backbones import create_backbone
from meta_neighborhoods.film import FiLMBatchNorm2d, FiLMDictionary, film_norm_layer
from meta_neighborhoods.heads import decayed_parameter_names


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


def _reference(layer: FiLMBatchNorm2d, x: torch.Tensor, similarity: str) -> torch.Tensor:
    """Eq. 4 and 5 one example at a time, with explicit similarities and softmax."""
    bn, film = layer.bn, layer.film
    a = F.batch_norm(x, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)  # couples the batch
    temperature = film.attention.log_temperature.exp()
    outputs = []
    for a_i in a:
        g = a_i.mean(dim=(1, 2))
        sims = []
        for k in film.keys:
            if similarity == "cosine":
                sims.append(g @ k / (g.norm() * k.norm()))
            else:
                sims.append(-(g - k).pow(2).sum())
        e = (torch.stack(sims) / temperature).exp()
        w = e / e.sum()
        gamma_hat = sum(w[j] * film.gamma[j] for j in range(len(w)))
        beta_hat = sum(w[j] * film.beta[j] for j in range(len(w)))
        outputs.append((1 + gamma_hat)[:, None, None] * a_i + beta_hat[:, None, None])
    return torch.stack(outputs)


@pytest.mark.parametrize("similarity,temperature", [("cosine", 0.2), ("euclidean", 2.0)])
def test_batched_layer_matches_per_example_loop(similarity, temperature):
    layer = FiLMBatchNorm2d(6, size=4, similarity=similarity, temperature=temperature).double()
    with torch.no_grad():
        layer.film.keys.normal_(0, 0.5)
        layer.film.gamma.normal_(0, 0.5)
        layer.film.beta.normal_(0, 0.5)
        layer.bn.bias.normal_()
    x = torch.randn(5, 6, 4, 3, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(5, 6, 4, 3, dtype=torch.float64)
    params = [x, layer.film.keys, layer.film.gamma, layer.film.beta,
              layer.film.attention.log_temperature, layer.bn.weight, layer.bn.bias]

    out = layer.train()(x)
    expected = _reference(layer, x, similarity)
    torch.testing.assert_close(out, expected)
    grads = torch.autograd.grad((out * upstream).sum(), params)
    expected_grads = torch.autograd.grad((expected * upstream).sum(), params)
    for name, g, e in zip(["x", "keys", "gamma", "beta", "log_T", "bn.weight", "bn.bias"], grads, expected_grads):
        assert g.abs().sum() > 0, name
        torch.testing.assert_close(g, e, msg=name)


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
