"""Backbone contract: shapes, gradients, norm-layer factory hooks, no final ReLU."""

import pytest
import torch
import torch.nn as nn

from meta_neighborhoods.backbones import available_backbones, create_backbone

NAMES = available_backbones()
PAPER_PARAMS = {  # the paper's backbones: (low, high) parameters, in_channels=3
    "convnet4": (4e5, 7e5),
    "resnet29": (2e5, 5e5),
    "resnet56": (4e5, 9e5),
    "densenet40_bc": (1e5, 3e5),
}
PAPER_STAGES = {"convnet4": 4, "resnet29": 3, "resnet56": 3, "densenet40_bc": 3}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_registry_lists_the_paper_backbones():
    assert set(PAPER_PARAMS) <= set(NAMES)


@pytest.mark.parametrize("name", sorted(PAPER_STAGES))
def test_paper_backbones_have_their_stages(name):
    assert create_backbone(name).num_stages == PAPER_STAGES[name]


@pytest.mark.parametrize("name,option,value,channels", [
    ("resnet29", "stem_width", 32, lambda m: m.stem.out_channels),
    ("resnet56", "stem_width", 8, lambda m: m.stem.out_channels),
    ("densenet40_bc", "growth_rate", 6, lambda m: m.features[0].out_channels),  # the stem is 2 x growth_rate wide
])
def test_constructor_options_reach_the_backbone(name, option, value, channels):
    """create_backbone's keyword arguments are the constructor's (timm's create_model): a width option changes the
    network, which still maps images to its out_features."""
    model = create_backbone(name, **{option: value}).eval()
    default = create_backbone(name)
    assert channels(model) == value * (2 if option == "growth_rate" else 1) != channels(default)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 16, 16)).shape == (2, model.out_features)


def test_unknown_constructor_option_is_refused():
    with pytest.raises(TypeError, match="stem_width"):
        create_backbone("convnet4", stem_width=8)


def test_unknown_name_raises_and_lists_known_names():
    with pytest.raises(ValueError, match="convnet4"):
        create_backbone("resnet1000")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("in_channels,size", [(1, 28), (3, 32), (3, 8), (1, 9)])
def test_output_shape_and_finite(name, in_channels, size):
    model = create_backbone(name, in_channels=in_channels).eval()
    with torch.no_grad():
        out = model(torch.randn(2, in_channels, size, size))
    assert out.shape == (2, model.out_features)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_gets_a_gradient(name):
    model = create_backbone(name).train()
    out = model(torch.randn(2, 3, 32, 32))
    # out.sum() would give zero gradients through a train-mode final BN, so use a random projection.
    (out * torch.randn_like(out)).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", NAMES)
def test_norm_layer_factory_builds_every_norm(name):
    calls = []

    def norm_layer(num_channels, last_in_stage):
        calls.append((num_channels, last_in_stage))
        return nn.BatchNorm2d(num_channels)

    model = create_backbone(name, norm_layer=norm_layer)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert len(calls) == n_bn
    assert sum(last for _, last in calls) == model.num_stages
    # The final BN produces the features and closes the last stage.
    assert calls[-1] == (model.out_features, True)


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_parameter_count(name):
    n = sum(p.numel() for p in create_backbone(name).parameters())
    print(f"{name}: {n:,} parameters")
    low, high = PAPER_PARAMS[name]
    assert low < n < high


def test_deeper_resnet_is_bigger():
    def count(name):
        return sum(p.numel() for p in create_backbone(name).parameters())

    assert count("resnet56") > count("resnet29")


@pytest.mark.parametrize("name", NAMES)
def test_features_have_no_final_relu(name):
    model = create_backbone(name).train()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert (out < 0).any()


def test_the_architectures_details_the_parameter_counts_do_not_see():
    """Two max-poolings in ConvNet-4, DenseNet-BC's transitions halving the channels (compression 0.5), and convs
    drawn by Kaiming's rule on their fan-out (std sqrt(2 / (out x k x k)))."""
    assert sum(isinstance(m, nn.MaxPool2d) for m in create_backbone("convnet4").modules()) == 2
    dense = create_backbone("densenet40_bc")
    transitions = [m.conv for m in dense.modules() if type(m).__name__ == "Transition"]
    assert len(transitions) == 2 and all(c.out_channels == c.in_channels // 2 for c in transitions)
    torch.manual_seed(0)
    convs = [m for m in create_backbone("resnet56").modules() if isinstance(m, nn.Conv2d) and m.weight.numel() > 5000]
    for conv in convs:
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.1)


def test_the_pre_activation_resnet_downsamples_twice_and_projects_the_activated_input():
    """Stride 2 opens the second and third stages only (32 -> 8 pixels), and a projection shortcut reads the
    block's BN-ReLU'd input, as in He et al.'s pre-activation ResNet."""
    torch.manual_seed(0)
    model = create_backbone("resnet29").eval()
    shapes, seen = [], {}
    model.final_bn.register_forward_hook(lambda module, inputs, output: shapes.append(tuple(output.shape)))
    first = model.blocks[0]
    first.shortcut.register_forward_hook(lambda module, inputs, output: seen.update(read=inputs[0]))
    x = torch.randn(2, 3, 32, 32)
    model(x)
    assert shapes == [(2, model.out_features, 8, 8)]
    torch.testing.assert_close(seen["read"], torch.relu(first.bn1(model.stem(x))))
